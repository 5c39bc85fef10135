//go:build !nogui

package main

import "github.com/presence-mps/presence/app"

func init() { window, display = app.Run, app.DisplayAvailable }
