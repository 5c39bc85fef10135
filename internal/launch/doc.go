// Package launch is how a Presence instance starts from a data dir, for
// `presence serve` and the desktop window alike:
//
//   - [Dir] is the data dir's state: settings.json (the vault choice and
//     the server [settings.Settings]), aliases.json, and the run files
//     that tell the command line where the running instance listens;
//   - [Setup] is the first run, which creates the certificate authority
//     and the CIRA account;
//   - [Starter] opens the history file, starts the instance, writes the
//     run files and serves the debug profiles, and closes all of them
//     when a start fails or the instance stops;
//   - [Window] is what the window gets: the setup, the start, the
//     settings and the log.
//
// It imports no Fyne package: the window (package app) and the command
// line (package cli) both import it.
package launch
