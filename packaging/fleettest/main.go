// Command fleettest is the small client packaging/fleet-test.sh needs
// beside curl and amtterm: a websocket client for Presence's relay, and
// a reader of the JSON the presence commands print, so the script needs
// no jq.
//
//	fleettest relay -url WS-URL [-listen 127.0.0.1:0]
//	    Reads "ACCOUNT:PASSWORD" (a console account) from the first line of
//	    standard input, listens on -listen, prints "listening ADDR", and
//	    carries each TCP connection accepted there over a websocket of its
//	    own to WS-URL (the relay, /relay/webrelay.ashx?host=…&port=…),
//	    logged in with Basic auth, in binary frames (RFC 6455, through
//	    golang.org/x/net/websocket). A tool that speaks the device port's
//	    protocol (curl for WS-Man, amtterm for Serial-over-LAN) then reaches
//	    the device through the relay. It runs until killed.
//
//	fleettest tsv [-path KEY] FIELD...
//	    Reads one JSON value from standard input and prints one line per
//	    element (the value itself if it is not an array; -path KEY first
//	    descends into an object's key, dotted for nested keys) with the
//	    FIELDs (dotted paths) separated by tabs. A missing field prints
//	    "-"; strings print as they are, other values as JSON.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/websocket"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "relay":
		err = relay(os.Args[2:])
	case "tsv":
		err = tsv(os.Args[2:], os.Stdin, os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleettest:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: fleettest relay -url WS-URL [-listen ADDR] | fleettest tsv [-path KEY] FIELD...")
	os.Exit(2)
}

// relay bridges TCP connections to websockets of the relay.
func relay(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	wsURL := fs.String("url", "", "the relay's websocket URL (ws://HOST:PORT/relay/webrelay.ashx?host=…&port=…)")
	listen := fs.String("listen", "127.0.0.1:0", "where to accept the tool's connections")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := url.Parse(*wsURL)
	if err != nil || u.Scheme != "ws" || u.Host == "" {
		return fmt.Errorf("-url %q: want ws://HOST:PORT/…", *wsURL)
	}
	cred, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	cred = strings.TrimRight(cred, "\r\n")
	if !strings.Contains(cred, ":") {
		return errors.New("want ACCOUNT:PASSWORD on the first line of standard input")
	}
	cfg, err := websocket.NewConfig(u.String(), "http://"+u.Host)
	if err != nil {
		return err
	}
	cfg.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(cred)))
	cfg.Dialer = &net.Dialer{Timeout: 10 * time.Second}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go bridge(c, cfg)
	}
}

// bridge carries one TCP connection over one websocket until either ends.
func bridge(c net.Conn, cfg *websocket.Config) {
	defer c.Close()
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleettest: relay:", err)
		return
	}
	defer ws.Close()
	ws.PayloadType = websocket.BinaryFrame
	var once sync.Once
	done := make(chan struct{})
	end := func() { once.Do(func() { close(done) }) }
	go func() { io.Copy(ws, c); end() }()
	go func() { io.Copy(c, ws); end() }()
	<-done
}

// tsv prints fields of a JSON value's elements, tab-separated.
func tsv(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("tsv", flag.ContinueOnError)
	path := fs.String("path", "", "descend into this (dotted) key first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var v any
	dec := json.NewDecoder(in)
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("reading JSON: %w", err)
	}
	if *path != "" {
		var ok bool
		if v, ok = lookup(v, *path); !ok {
			return fmt.Errorf("no %q in the JSON", *path)
		}
	}
	items, ok := v.([]any)
	if !ok {
		items = []any{v}
	}
	w := bufio.NewWriter(out)
	for _, it := range items {
		cols := make([]string, 0, fs.NArg())
		for _, f := range fs.Args() {
			cols = append(cols, text(it, f))
		}
		fmt.Fprintln(w, strings.Join(cols, "\t"))
	}
	return w.Flush()
}

// lookup follows a dotted path of object keys.
func lookup(v any, path string) (any, bool) {
	for k := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// text is a field's value on one line.
func text(v any, path string) string {
	f, ok := lookup(v, path)
	if !ok || f == nil || f == "" {
		return "-"
	}
	if s, ok := f.(string); ok {
		return strings.NewReplacer("\t", " ", "\n", " ").Replace(s)
	}
	b, err := json.Marshal(f)
	if err != nil {
		return "-"
	}
	return string(b)
}
