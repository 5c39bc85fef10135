# shellcheck shell=bash disable=SC2034  # the names are used by the scripts that source this
# The application's metadata, read from FyneApp.toml (the one place it is
# written down), and the names of the artefacts in dist/. Source it after
# scripts/lib.sh; do not run it.

# fyneapp_get SECTION KEY prints KEY's value in [SECTION] of FyneApp.toml
# ("" for the keys before the first section), without the quotes. Enough
# TOML for that file: one `key = value` a line, strings without escapes.
fyneapp_get() {
	awk -v want="$1" -v key="$2" '
		/^[[:space:]]*\[/ { sec = $0; gsub(/^[[:space:]]*\[|\][[:space:]]*$/, "", sec); next }
		sec == want && $0 ~ "^[[:space:]]*" key "[[:space:]]*=" {
			v = $0
			sub(/^[^=]*=[[:space:]]*/, "", v)
			if (v ~ /^"/) { sub(/^"/, "", v); sub(/".*$/, "", v) } else { sub(/[[:space:]]*(#.*)?$/, "", v) }
			print v
			exit
		}' "$REPO_ROOT/FyneApp.toml"
}

APP_NAME=$(fyneapp_get Details Name)
APP_ID=$(fyneapp_get Details ID)
APP_VERSION=$(fyneapp_get Details Version)
APP_BUILD=$(fyneapp_get Details Build)
APP_ICON_REL=$(fyneapp_get Details Icon)
APP_ICON=$REPO_ROOT/$APP_ICON_REL
APP_WEBSITE=$(fyneapp_get "" Website)
APP_GENERIC_NAME=$(fyneapp_get LinuxAndBSD GenericName)
APP_COMMENT=$(fyneapp_get LinuxAndBSD Comment)

[[ "$APP_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
	die "FyneApp.toml: Version \"$APP_VERSION\" is not MAJOR.MINOR.PATCH (the .deb, the installer and Windows' version resource need that)"
[[ "$APP_BUILD" =~ ^[0-9]+$ ]] || die "FyneApp.toml: Build \"$APP_BUILD\" is not a number"
[ -n "$APP_NAME" ] || die "FyneApp.toml: [Details] Name is required"
[ -n "$APP_ID" ] || die "FyneApp.toml: [Details] ID is required"
[ -f "$APP_ICON" ] || die "FyneApp.toml: the icon $APP_ICON is missing"

# Everything packaging/build.sh makes goes here (.gitignore has dist/).
DIST=${PRESENCE_DIST:-$REPO_ROOT/dist}
TARXZ_FILE=presence-$APP_VERSION-linux-amd64.tar.xz
DEB_FILE=presence_${APP_VERSION}_amd64.deb
WINEXE_FILE=presence-$APP_VERSION-windows-amd64.exe
SETUP_FILE=$APP_NAME-Setup-$APP_VERSION.exe

# The program's `presence version`, set at link time (it does not change
# what is compiled, so these builds share the build cache with a plain
# `go build`, as packaging/screenshot.sh runs it).
VERSION_LDFLAG="-X github.com/presence-mps/presence/internal/cli.Version=$APP_VERSION"
