//go:build windows

package main

import (
	"os"

	"golang.org/x/sys/windows"
)

// The Windows program is built as a GUI program (-H windowsgui), so it has
// no console of its own and a command (presence serve, devices, …) typed
// in cmd.exe or PowerShell would print nothing. When it is given a
// command, it attaches to the console of the shell that started it, for
// the standard streams that are not already redirected to a file or pipe.
func init() {
	if len(os.Args) < 2 {
		return // the window
	}
	attach := windows.NewLazySystemDLL("kernel32.dll").NewProc("AttachConsole")
	const attachParentProcess = ^uintptr(0) // ATTACH_PARENT_PROCESS, (DWORD)-1
	if r, _, _ := attach.Call(attachParentProcess); r == 0 {
		return // started without a console (Explorer, a service)
	}
	redirected := func(std uint32) bool {
		h, err := windows.GetStdHandle(std)
		return err == nil && h != 0 && h != windows.InvalidHandle
	}
	if !redirected(windows.STD_OUTPUT_HANDLE) {
		if f, err := os.OpenFile("CONOUT$", os.O_WRONLY, 0); err == nil {
			os.Stdout = f
		}
	}
	if !redirected(windows.STD_ERROR_HANDLE) {
		if f, err := os.OpenFile("CONOUT$", os.O_WRONLY, 0); err == nil {
			os.Stderr = f
		}
	}
	if !redirected(windows.STD_INPUT_HANDLE) {
		if f, err := os.OpenFile("CONIN$", os.O_RDONLY, 0); err == nil {
			os.Stdin = f
		}
	}
}
