package fleet

import (
	"slices"
	"strings"
)

// A device's home, for AMT's primary and backup MPS entries: when a
// peer's link drops while it holds devices, those devices are stranded
// from that peer. The ones that then connect here came to us as their
// backup. Once the peer is back, [Peers.Away] lists them, so that the
// backup can close their tunnels and let them go home (AMT starts again
// at its first MPS entry; unconfirmed on hardware, see fleet.md §1).
//
// Only a lost link strands a device: a device that moves while both
// instances are up (the newest connection wins) chose where it went, and
// a device that was sent here from its backup is not recorded at all, so
// the two instances never send a device back and forth. The record is
// in memory; a restart of the backup forgets it.

// maxStranded caps the stranded records, which peers' tables feed.
const maxStranded = 4 * maxPeerDevices

// Away is a device this instance holds whose home is another instance
// whose link is up again.
type Away struct {
	Owner
	// Home is the instance that held the device until its link dropped.
	Home Member `json:"home"`
}

// strandLocked records that the devices of table were on peer when its
// link dropped.
func (p *Peers) strandLocked(peer string, table map[string]Owner) {
	if peer == "" {
		return
	}
	for g := range table {
		if len(p.stranded) >= maxStranded {
			return
		}
		p.stranded[g] = peer
	}
}

// Away lists the devices this instance holds that were stranded by a
// peer whose link is up again, sorted by GUID.
func (p *Peers) Away() []Away {
	p.mu.Lock()
	defer p.mu.Unlock()
	up := map[string]Member{}
	for _, l := range p.links {
		if l.up {
			up[l.member.ID] = l.member
		}
	}
	var out []Away
	for g, home := range p.stranded {
		o, mine := p.owners[g]
		m, ok := up[home]
		if mine && ok {
			out = append(out, Away{Owner: o, Home: m})
		}
	}
	slices.SortFunc(out, func(a, b Away) int { return strings.Compare(a.GUID, b.GUID) })
	return out
}
