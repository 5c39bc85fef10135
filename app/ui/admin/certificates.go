package admin

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// Cert describes one certificate.
type Cert struct {
	Subject, Issuer     string
	SANs                []string // "DNS:name" or "IP:address"
	SHA256              string   // fingerprint, colon-separated uppercase hex
	Serial              string   // hex
	NotBefore, NotAfter time.Time
	Key                 string // for example "RSA 3072"
	Signature           string // the signature algorithm
}

// Problem is one finding of the certificate doctor.
type Problem struct {
	Severe bool   // AMT will refuse the MPS, or soon will
	Text   string // a sentence
}

// CertStatus is the MPS certificate authority as the screen shows it.
type CertStatus struct {
	Root, Server Cert
	// Address is the MPS address devices are configured with, which the
	// doctor checked the server certificate against.
	Address  string
	Problems []Problem
	// Primary is this instance's MPS entry in AMT's remote-access
	// policy; Backups are the other instances of its fleet that could be
	// the second entry, the first of them shown as the backup (none
	// outside a fleet, or before a peer has announced its entry). InFleet
	// reports whether this instance is in a fleet.
	Primary MPSEntry
	Backups []MPSEntry
	InFleet bool
}

// Renewed is the outcome of a renewal.
type Renewed struct {
	Server Cert
	// InUse reports whether the running server presents the new
	// certificate already; if not, it does after a restart.
	InUse bool
}

// CertBackend reads and renews the certificate authority. Its methods may
// block (keychain, RSA key generation); the screen calls them off the
// Fyne goroutine.
type CertBackend interface {
	// Certificates describes the root and the server certificate and
	// runs the doctor.
	Certificates() (CertStatus, error)
	// RenewServer issues a new server certificate and key from the same
	// root and saves them.
	RenewServer() (Renewed, error)
	// RootPEM returns the root certificate in PEM.
	RootPEM() ([]byte, error)
}

// Certificates is the Certificates screen: the root and the server
// certificate, renewal of the server certificate, export of the root, and
// the doctor's findings. Use it on the Fyne goroutine.
type Certificates struct {
	Root fyne.CanvasObject

	RootDetails, ServerDetails *widget.Label
	// Entries says what to enter in AMT for the policy's two MPS
	// entries: this instance as primary, another as backup.
	Entries             *widget.Label
	RenewBtn, ExportBtn *widget.Button
	// Findings holds one row per doctor finding: a severity icon and a
	// label; FindingTexts returns the labels' text.
	Findings *fyne.Container
	// Message says what the last action did, or what went wrong.
	Message *widget.Label

	// Window is the window dialogs open over; nil means the one showing
	// Root.
	Window fyne.Window
	// Go runs a backend call; nil means in a new goroutine. Tests set it
	// to func(f func()) { f() }.
	Go func(func())
	// Now is the clock for "days left" (nil: time.Now).
	Now func() time.Time
	// Logger receives backend errors in full (nil: discarded).
	Logger *slog.Logger

	b   CertBackend
	st  CertStatus
	gen uint64
}

// NewCertificates builds the screen over b. Call Refresh to fill it.
func NewCertificates(b CertBackend) *Certificates {
	c := &Certificates{b: b}
	details := func() *widget.Label {
		l := wrapLabel("Reading the certificates…")
		l.Wrapping = fyne.TextWrapBreak
		l.TextStyle = fyne.TextStyle{Monospace: true}
		return l
	}
	c.RootDetails, c.ServerDetails, c.Entries = details(), details(), details()
	c.RenewBtn = widget.NewButton("Renew…", c.confirmRenew)
	c.ExportBtn = widget.NewButton("Export root certificate…", c.exportDialog)
	c.RenewBtn.Disable()
	c.ExportBtn.Disable()
	c.Findings = container.NewVBox()
	c.Message = wrapLabel("")
	c.Root = container.NewVScroll(container.NewVBox(
		heading("Root certificate: install it in AMT as a trusted root"),
		c.RootDetails,
		container.NewHBox(c.ExportBtn),
		heading("Server certificate: the CIRA listener presents it to AMT"),
		c.ServerDetails,
		container.NewHBox(c.RenewBtn),
		c.Message,
		heading("Doctor"),
		c.Findings,
		heading("MPS entries: enter them in AMT (CIRA / Management Presence Server)"),
		c.Entries,
	))
	return c
}

func (c *Certificates) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Refresh reads the certificates and the doctor's findings.
func (c *Certificates) Refresh() {
	c.gen++
	gen := c.gen
	var st CertStatus
	var err error
	run(c.Go, func() { st, err = c.b.Certificates() }, func() {
		if gen == c.gen {
			c.show(st, err)
		}
	})
}

// relayout lays the screen out again after texts changed size. (The
// desktop driver notices on its own at the next frame; the test canvas
// and a goldens snapshot do not.)
func (c *Certificates) relayout() {
	if c.Root != nil {
		c.Root.Refresh()
	}
}

func (c *Certificates) show(st CertStatus, err error) {
	defer c.relayout()
	if err != nil {
		logger(c.Logger).Warn("reading the certificates failed", "err", err)
		msg := Sentence("The certificates could not be read", err)
		c.RootDetails.SetText(msg)
		c.ServerDetails.SetText("")
		c.Entries.SetText("")
		c.Findings.RemoveAll()
		c.RenewBtn.Disable()
		c.ExportBtn.Disable()
		return
	}
	c.st = st
	now := c.now()
	c.RootDetails.SetText(certText(st.Root, now))
	c.ServerDetails.SetText(certText(st.Server, now))
	c.Entries.SetText(st.Policy().Text())
	c.RenewBtn.Enable()
	c.ExportBtn.Enable()
	c.Findings.RemoveAll()
	if len(st.Problems) == 0 {
		c.Findings.Add(wrapLabel(fmt.Sprintf("No problems: AMT devices reaching %s should accept these certificates.", st.Address)))
	}
	for _, p := range st.Problems {
		icon, word := theme.WarningIcon(), "Warning"
		if p.Severe {
			icon, word = theme.ErrorIcon(), "Must fix"
		}
		c.Findings.Add(container.NewBorder(nil, nil, widget.NewIcon(icon), nil, wrapLabel(word+": "+p.Text)))
	}
}

// FindingTexts returns the text of each row of Findings.
func (c *Certificates) FindingTexts() []string {
	var out []string
	for _, o := range c.Findings.Objects {
		switch o := o.(type) {
		case *widget.Label:
			out = append(out, o.Text)
		case *fyne.Container:
			for _, p := range o.Objects {
				if l, ok := p.(*widget.Label); ok {
					out = append(out, l.Text)
				}
			}
		}
	}
	return out
}

// Policy is what the screen says to enter in AMT: this instance as the
// primary MPS entry, the first of Backups as the backup.
func (st CertStatus) Policy() Policy {
	p := Policy{Primary: st.Primary, InFleet: st.InFleet, Account: [][2]string{
		{"Username", "a CIRA account (see Accounts)"},
		{"Trusted root", "the root certificate above (Export root certificate…)"},
	}}
	if p.Primary.Address == "" {
		p.Primary.Address = st.Address
	}
	if len(st.Backups) > 0 {
		p.Backup, p.Others = &st.Backups[0], st.Backups[1:]
	}
	return p
}

// certText describes a certificate, one field a line.
func certText(c Cert, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject:  %s\n", c.Subject)
	if len(c.SANs) > 0 {
		fmt.Fprintf(&b, "Names:    %s\n", strings.Join(c.SANs, ", "))
	}
	fmt.Fprintf(&b, "SHA-256:  %s\n", c.SHA256)
	fmt.Fprintf(&b, "Valid:    %s to %s (%s)\n", c.NotBefore.UTC().Format(time.DateOnly), c.NotAfter.UTC().Format(time.DateOnly), daysLeft(now, c.NotAfter))
	fmt.Fprintf(&b, "Key:      %s, signed with %s", c.Key, c.Signature)
	return b.String()
}

// daysLeft says how long until t: "1826 days left", "1 day left",
// "expires today", or "expired 3 days ago".
func daysLeft(now, t time.Time) string {
	d := t.Sub(now)
	days := int(math.Floor(d.Hours() / 24))
	switch {
	case d < 0:
		ago := int(math.Ceil(-d.Hours() / 24))
		if ago == 1 {
			return "expired 1 day ago"
		}
		return fmt.Sprintf("expired %d days ago", ago)
	case days == 0:
		return "expires within a day"
	case days == 1:
		return "1 day left"
	}
	return fmt.Sprintf("%d days left", days)
}

// renewText is what the renewal's confirmation says. Devices check the
// server certificate against the root they trust, and the root stays.
func renewText(address string) string {
	return fmt.Sprintf("Presence will make a new key and a new server certificate for %s, valid for up to five years "+
		"and issued by the same root certificate.\n\nAMT devices trust the root, not the server certificate, so nothing "+
		"needs to change in AMT, and tunnels that are up stay up.", address)
}

func (c *Certificates) window() fyne.Window {
	if c.Window != nil {
		return c.Window
	}
	return windowFor(c.Root)
}

// confirmRenew asks before renewing.
func (c *Certificates) confirmRenew() {
	w := c.window()
	if w == nil {
		return
	}
	d := dialog.NewConfirm("Renew the server certificate?", renewText(c.st.Address), func(ok bool) {
		if ok {
			c.Renew()
		}
	}, w)
	d.SetConfirmText("Renew")
	d.SetDismissText("Cancel")
	d.Show()
}

// Renew renews the server certificate (the confirmation is done) and says
// how it went.
func (c *Certificates) Renew() {
	c.RenewBtn.Disable()
	c.Message.SetText("Renewing the server certificate…")
	var r Renewed
	var err error
	run(c.Go, func() { r, err = c.b.RenewServer() }, func() {
		c.RenewBtn.Enable()
		defer c.relayout()
		if err != nil {
			logger(c.Logger).Warn("renewing the server certificate failed", "err", err)
			c.Message.SetText(Sentence("The server certificate could not be renewed", err) + " The current one is still in use.")
			return
		}
		until := r.Server.NotAfter.UTC().Format(time.DateOnly)
		if r.InUse {
			c.Message.SetText("The new server certificate is in use, valid until " + until + ". Devices trust the same root, so nothing changes in AMT.")
		} else {
			c.Message.SetText("The new server certificate is saved, valid until " + until + ". Restart Presence to present it; devices trust the same root, so nothing changes in AMT.")
		}
		c.Refresh()
	})
}

// exportDialog asks where to save the root certificate.
func (c *Certificates) exportDialog() {
	w := c.window()
	if w == nil {
		return
	}
	d := dialog.NewFileSave(func(f fyne.URIWriteCloser, err error) {
		if err != nil {
			c.Message.SetText(Sentence("The file could not be opened", err))
			return
		}
		if f != nil {
			c.ExportRootTo(f, f.URI().Name())
		}
	}, w)
	d.SetFileName("presence-root.pem")
	d.Show()
}

// ExportRootTo writes the root certificate in PEM to f, closes f and says
// so in Message; name is how the message calls the file.
func (c *Certificates) ExportRootTo(f io.WriteCloser, name string) {
	export{goFn: c.Go, btn: c.ExportBtn, msg: c.Message, log: c.Logger, after: c.relayout,
		write: func(w io.Writer) error {
			pem, err := c.b.RootPEM()
			if err == nil {
				_, err = w.Write(pem)
			}
			return err
		},
		failed: "The root certificate could not be saved",
		ok:     "The root certificate was saved to " + name + ". Install it in AMT as a trusted root certificate.",
	}.to(f, name)
}
