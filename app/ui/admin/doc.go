// Package admin holds three administration screens of the desktop window:
// [History] (tunnel events, console sessions, a device's availability and
// CSV export), [Certificates] (the MPS root and server certificate, renewal,
// root export and the doctor's findings) and [Accounts] (CIRA, console and
// AMT accounts).
//
// Each screen is a struct with a Root to put in the window, exported
// widgets that tests drive, and a Refresh to call on the Fyne goroutine. A
// screen reads and acts through a narrow backend interface of value types
// defined here; package app/adapter implements them over the vault and the
// history file, and tests use fakes.
//
// # Threading
//
// Only the Fyne goroutine touches widgets. Every backend call may block (a
// keychain prompt, the bbolt file, RSA key generation, a file write), so a
// screen never makes one in a callback: it hands the call to its Go field,
// which by default starts a goroutine, and applies the result with
// fyne.Do. A result that arrives after a newer request of the same kind is
// dropped. Tests set Go to run the call inline (fyne's test driver also
// runs fyne.Do inline), so every assertion after a tap sees the result.
//
// # Errors
//
// Errors are shown in the screen as sentences an admin can act on (see
// [Sentence]); a screen's Logger, if set, gets the full error. Passwords
// never appear in a label, a log record or an error text: they are held as
// [vault.Secret], which prints as REDACTED.
//
// The package never imports fyne.io/fyne/v2/app, so it builds and tests
// without cgo or a display.
package admin
