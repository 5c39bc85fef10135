package history

import (
	"cmp"
	"strconv"
	"strings"
	"time"
)

// EventTable returns tunnel events as a table with a header row, in local
// time: what `presence history` prints and the window exports as CSV.
func EventTable(evs []TunnelEvent) (header []string, rows [][]string) {
	rows = make([][]string, 0, len(evs))
	for _, e := range evs {
		ports := make([]string, len(e.Ports))
		for i, p := range e.Ports {
			ports[i] = strconv.FormatUint(uint64(p), 10)
		}
		rows = append(rows, []string{e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Device, e.Hostname, e.Kind, e.Reason,
			e.Remote, e.TLSVersion, strings.Join(ports, ","), e.User})
	}
	return []string{"TIME", "DEVICE", "HOSTNAME", "EVENT", "REASON", "REMOTE", "TLS", "PORTS", "USER"}, rows
}

// SessionTable returns console sessions as a table with a header row, in
// local time; a session without an end is "live".
func SessionTable(recs []SessionRecord) (header []string, rows [][]string) {
	rows = make([][]string, 0, len(recs))
	for _, r := range recs {
		end := "live"
		if !r.End.IsZero() {
			end = r.End.Local().Format(time.DateTime)
		}
		rows = append(rows, []string{r.Start.Local().Format(time.DateTime), end, r.Kind, r.User, r.Console, r.Device,
			strconv.FormatUint(uint64(r.Port), 10), strconv.FormatInt(r.BytesToDevice, 10), strconv.FormatInt(r.BytesFromDevice, 10), r.EndReason, cmp.Or(r.Via, "-")})
	}
	// VIA is last, so that CSV readers of the earlier columns are not
	// moved: the fleet instance a forwarded session came through.
	return []string{"START", "END", "KIND", "ACCOUNT", "CONSOLE", "DEVICE", "PORT", "TO DEVICE", "FROM DEVICE", "END REASON", "VIA"}, rows
}
