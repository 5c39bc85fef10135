package admin

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// MPSEntry is one MPS entry of AMT's remote-access policy: what AMT is
// given to reach one instance.
type MPSEntry struct {
	// Address is the MPS address, which is also the common name AMT
	// checks the instance's server certificate against; Port is its CIRA
	// port.
	Address string
	Port    int
	// Instance names the instance of the fleet it reaches ("" for this
	// one, or when unknown).
	Instance string
}

// ParseEntry makes an entry of HOST:PORT (the MPS entry an instance
// announces, or the one a join bundle names) for instance.
func ParseEntry(hostport, instance string) (MPSEntry, bool) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return MPSEntry{}, false
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p > 65535 {
		return MPSEntry{}, false
	}
	return MPSEntry{Address: host, Port: p, Instance: instance}, true
}

// String is HOST:PORT, then the instance's name, if known.
func (e MPSEntry) String() string {
	s := net.JoinHostPort(e.Address, strconv.Itoa(e.Port))
	if e.Instance != "" {
		s += " (" + e.Instance + ")"
	}
	return s
}

// Policy is what to enter in AMT for the two MPS entries of one
// remote-access policy: this instance first (primary), another instance
// of the fleet second (backup), which AMT tries when the first cannot be
// reached.
type Policy struct {
	Primary MPSEntry
	// Account are the primary entry's lines after its common name, as
	// label and value: the user name, the password, the root.
	Account [][2]string
	// Backup is the second entry; nil when there is none yet. Others are
	// the other instances that could be it instead.
	Backup *MPSEntry
	Others []MPSEntry
	// InFleet reports whether this instance is in a fleet already (so a
	// missing backup waits for a peer, not for an invitation).
	InFleet bool
}

// Text says it in the words of `presence fleet join` (internal/cli,
// printAMTSettings), one field a line.
func (p Policy) Text() string {
	var b strings.Builder
	field := func(label, value string) { fmt.Fprintf(&b, "  %-19s%s\n", label+":", value) }
	b.WriteString("The remote-access policy's first MPS entry (primary), this instance:\n")
	field("MPS address", p.Primary.Address)
	port := strconv.Itoa(p.Primary.Port)
	if p.Primary.Port == 0 {
		port = "the CIRA listener's (Settings)"
	}
	field("Port", port)
	field("Common name (CN)", p.Primary.Address)
	for _, l := range p.Account {
		field(l[0], l[1])
	}
	b.WriteByte('\n')
	switch {
	case p.Backup != nil:
		who := "another instance of this fleet"
		if p.Backup.Instance != "" {
			who += " (" + p.Backup.Instance + ")"
		}
		fmt.Fprintf(&b, "Its second MPS entry (backup), %s,\nwhich AMT tries when the first cannot be reached:\n", who)
		field("MPS address", p.Backup.Address)
		field("Port", strconv.Itoa(p.Backup.Port))
		field("Common name (CN)", p.Backup.Address)
		field("Username", "the same CIRA account (the fleet shares its accounts)")
		field("Trusted root", "the same root")
		if len(p.Others) > 0 {
			others := make([]string, len(p.Others))
			for i, o := range p.Others {
				others[i] = o.String()
			}
			fmt.Fprintf(&b, "Any other instance of the fleet can be the backup instead: %s.\n", strings.Join(others, ", "))
		}
	case p.InFleet:
		b.WriteString("Backup MPS entry: none yet. No other instance of this fleet is linked and has\n" +
			"announced its entry; once one is, it is the backup (presence fleet status lists\n" +
			"each instance's address and CIRA port).\n")
	default:
		b.WriteString("Backup MPS entry: none yet. A second instance (presence fleet invite here,\n" +
			"presence fleet join there, or Join an existing Presence in its first run) is the\n" +
			"backup; presence fleet status lists each instance's address and CIRA port.\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
