package etcdstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/presence-mps/presence/mps/fleet"
)

// Limits on what this package writes and reads. Values in etcd are
// hostile input: anyone with write access to the prefix can put anything
// there, so sizes are checked before anything is decoded.
const (
	// maxValue is the largest value decoded; an Owner or Member is a few
	// hundred bytes.
	maxValue = 4096
	// maxGUID and maxID bound a device GUID and an instance id.
	maxGUID = 64
	maxID   = 128
	// maxField bounds every other string (host names, addresses).
	maxField = 255
	// maxPrefix bounds Config.Prefix.
	maxPrefix = 256
)

// keys builds and parses the key names under one prefix.
type keys struct {
	root      string // <prefix>v1/
	devices   string // <prefix>v1/devices/
	instances string // <prefix>v1/instances/
}

func newKeys(prefix string) keys {
	root := prefix + "v1/"
	return keys{root: root, devices: root + "devices/", instances: root + "instances/"}
}

func (k keys) device(guid string) string { return k.devices + guid }
func (k keys) instance(id string) string { return k.instances + id }

// validName reports whether s is a usable key segment: 1 to max bytes of
// ASCII letters, digits, '-', '_' and '.', so that no name reaches outside
// its directory or carries control characters.
func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// validText reports whether s is at most max bytes with no control
// characters.
func validText(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

var (
	errTooBig = errors.New("value too large")
	errBadKey = errors.New("bad key name")
)

// checkOwner reports what is wrong with o, or nil.
func checkOwner(o fleet.Owner) error {
	switch {
	case !validName(o.GUID, maxGUID) || o.GUID != fleet.NormalizeGUID(o.GUID):
		return errors.New("bad guid")
	case !validName(o.Instance, maxID):
		return errors.New("bad instance")
	case !validText(o.Host, maxField):
		return errors.New("bad host")
	}
	return nil
}

// checkMember reports what is wrong with m, or nil.
func checkMember(m fleet.Member) error {
	if !validName(m.ID, maxID) {
		return errors.New("bad id")
	}
	for _, f := range []string{m.Name, m.PeerAddr, m.ProxyAddr, m.APIAddr, m.Version} {
		if !validText(f, maxField) {
			return errors.New("bad field")
		}
	}
	return nil
}

// decodeOwner decodes the value of the device key for guid.
func decodeOwner(guid string, val []byte) (fleet.Owner, error) {
	var o fleet.Owner
	if !validName(guid, maxGUID) || guid != fleet.NormalizeGUID(guid) {
		return o, errBadKey
	}
	if len(val) > maxValue {
		return o, errTooBig
	}
	if err := json.Unmarshal(val, &o); err != nil {
		return fleet.Owner{}, err
	}
	if err := checkOwner(o); err != nil {
		return fleet.Owner{}, err
	}
	if o.GUID != guid {
		return fleet.Owner{}, fmt.Errorf("guid %q under key %q", o.GUID, guid)
	}
	return o, nil
}

// decodeMember decodes the value of the instance key for id.
func decodeMember(id string, val []byte) (fleet.Member, error) {
	var m fleet.Member
	if !validName(id, maxID) {
		return m, errBadKey
	}
	if len(val) > maxValue {
		return m, errTooBig
	}
	if err := json.Unmarshal(val, &m); err != nil {
		return fleet.Member{}, err
	}
	if err := checkMember(m); err != nil {
		return fleet.Member{}, err
	}
	if m.ID != id {
		return fleet.Member{}, fmt.Errorf("id %q under key %q", m.ID, id)
	}
	return m, nil
}

// hostKey is how host names are compared: AMT's names are DNS names, so
// case does not count.
func hostKey(host string) string { return strings.ToLower(host) }
