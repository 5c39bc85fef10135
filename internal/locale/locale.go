// Package locale keeps Fyne from complaining about the C locale. Import it,
// for its side effect only, from package main: it must initialise before
// Fyne's packages do.
//
// Fyne reads the message locale from LC_ALL, LC_MESSAGES or LANG (the
// first one set) and, unless it is exactly "C" or "POSIX", parses its
// language part; "C.UTF-8", the usual locale of servers, containers and
// CI, has the language "C", which does not parse, and Fyne prints
// "Fyne error: Error parsing user locale C" while its packages initialise
// and again whenever a widget asks for the locale. In such a locale the
// messages are the untranslated ones, English, so this package says so in
// LANGUAGE, which Fyne (github.com/jeandeaual/go-locale) then reads
// instead, and which gettext ignores in the C locale. A LANGUAGE the user
// set is left alone.
//
// It must be initialised before fyne.io/fyne/v2/lang. Go initialises
// packages in import-path order among those whose imports are done: this
// one imports only os, which every Fyne package waits for too, and its
// path sorts before golang.org/x/text, which Fyne's lang package imports;
// the default build's command test checks that no Fyne line is printed.
package locale

import "os"

func init() {
	if os.Getenv("LANGUAGE") != "" {
		return
	}
	for _, name := range [...]string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		if cLocale(v) {
			os.Setenv("LANGUAGE", "en")
		}
		return
	}
}

// cLocale reports whether the locale name v (language[_territory][.codeset][@modifier])
// is a C or POSIX locale other than the bare names, which Fyne handles.
func cLocale(v string) bool {
	if v == "C" || v == "POSIX" {
		return false
	}
	lang := v
	for i, r := range v {
		if r == '.' || r == '@' || r == '_' {
			lang = v[:i]
			break
		}
	}
	return lang == "C" || lang == "POSIX"
}
