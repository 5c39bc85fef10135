package history

import (
	"reflect"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	events := []TunnelEvent{
		ev(guid(1), KindUp, t0),
		ev(guid(2), KindDown, t0),
		ev(guid(3), KindAuthFailed, t0),
		{Kind: "keepalive-miss", Device: "x"},
		{},
	}
	for _, e := range events {
		got, err := decodeEvent(appendEvent(nil, &e))
		if err != nil {
			t.Fatalf("decode(%+v): %v", e, err)
		}
		e.Time = time.Time{} // the time is in the key
		if len(e.Ports) == 0 {
			e.Ports = nil
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip = %+v; want %+v", got, e)
		}
	}
	sessions := []SessionRecord{
		{Kind: "socks5", Console: "c", User: "u", Device: "d", Host: "h", Port: 16992,
			BytesToDevice: 1, BytesFromDevice: -1, End: fromNanos(t0.UnixNano()), EndReason: "idle"},
		{Kind: "fleet", Console: "c", User: "u", Device: "d", Port: 7, Via: "inst-a", End: fromNanos(t0.UnixNano())},
		{Kind: "fleet", Via: "inst-a"}, // open: no end before the via
		{},
	}
	for _, r := range sessions {
		got, err := decodeSession(appendSession(nil, &r))
		if err != nil {
			t.Fatalf("decode(%+v): %v", r, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip = %+v; want %+v", got, r)
		}
	}
}

// A newer record version with fields appended still decodes.
func TestRecordNewerVersion(t *testing.T) {
	e := ev(guid(1), KindUp, time.Time{})
	b := appendEvent(nil, &e)
	b[0] = recordVersion + 1
	b = append(b, 0xde, 0xad)
	got, err := decodeEvent(b)
	if err != nil || got.Device != e.Device || !reflect.DeepEqual(got.Ports, e.Ports) {
		t.Errorf("decode(v2) = %+v, %v; want the v1 fields", got, err)
	}
	if _, err := decodeEvent([]byte{0}); err == nil {
		t.Error("decode(version 0) succeeded")
	}
}

func FuzzDecode(f *testing.F) {
	for _, e := range []TunnelEvent{ev(guid(1), KindUp, t0), ev(guid(2), KindAuthFailed, t0), {Kind: "x"}} {
		f.Add(appendEvent(nil, &e))
	}
	r := SessionRecord{Kind: "socks5", User: "u", Device: "d", End: t0}
	f.Add(appendSession(nil, &r))
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		if e, err := decodeEvent(b); err == nil {
			again, err := decodeEvent(appendEvent(nil, &e))
			if err != nil || !reflect.DeepEqual(again, e) {
				t.Errorf("event re-encode: %+v, %v; want %+v", again, err, e)
			}
		}
		if s, err := decodeSession(b); err == nil {
			again, err := decodeSession(appendSession(nil, &s))
			if err != nil || !reflect.DeepEqual(again, s) {
				t.Errorf("session re-encode: %+v, %v; want %+v", again, err, s)
			}
		}
	})
}

func TestKeyOrder(t *testing.T) {
	times := []time.Time{time.Time{}, time.Unix(-1, 0), time.Unix(0, 0), time.Unix(0, 1), t0, t0.Add(1)}
	var prev []byte
	for _, tm := range times {
		k := appendID(nil, nanos(tm), 0)
		if prev != nil && string(prev) >= string(k) {
			t.Errorf("key of %v does not sort after the previous", tm)
		}
		prev = k
		if n, _ := splitID(k); !tm.IsZero() && n != tm.UnixNano() {
			t.Errorf("splitID(appendID(%v)) = %d", tm, n)
		}
	}
}
