// Package assets holds the files bundled into the binary: the application
// icon (512×512 PNG; FyneApp.toml names the same file for fyne package).
package assets

import _ "embed"

// Icon is the application icon, PNG.
//
//go:embed icon.png
var Icon []byte
