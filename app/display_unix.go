//go:build !nogui && (linux || freebsd || openbsd || netbsd || dragonfly)

package app

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// DisplayAvailable reports, as an error sentence, why the window cannot
// open: Fyne's GLFW driver needs an X display (XWayland on a Wayland
// desktop), and without one it panics deep inside GLFW. A DISPLAY of a
// form this does not know is taken as available.
func DisplayAvailable() error {
	d := os.Getenv("DISPLAY")
	if d == "" {
		return fmt.Errorf("there is no display to open the window on (DISPLAY is not set); to run Presence without a window, use presence serve")
	}
	network, addr, ok := xSocket(d)
	if !ok {
		return nil
	}
	c, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil && network == "unix" {
		c, err = net.DialTimeout(network, "@"+addr, 2*time.Second) // the abstract socket
	}
	if err != nil {
		return fmt.Errorf("the display %s does not answer, so the window cannot open; to run Presence without a window, use presence serve", d)
	}
	c.Close()
	return nil
}

// xSocket returns where the X server of display ([host]:N[.screen]) listens.
func xSocket(display string) (network, addr string, ok bool) {
	i := strings.LastIndexByte(display, ':')
	if i < 0 {
		return "", "", false
	}
	host, num := display[:i], display[i+1:]
	if j := strings.IndexByte(num, '.'); j >= 0 {
		num = num[:j]
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || n > 60000 {
		return "", "", false
	}
	switch host {
	case "", "unix":
		return "unix", "/tmp/.X11-unix/X" + strconv.Itoa(n), true
	}
	if strings.ContainsAny(host, "/") {
		return "", "", false
	}
	return "tcp", net.JoinHostPort(host, strconv.Itoa(6000+n)), true
}
