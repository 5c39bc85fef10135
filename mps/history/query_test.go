package history

import (
	"reflect"
	"testing"
	"time"
)

func TestAvailability(t *testing.T) {
	h := time.Hour
	now := t0.Add(24 * h)
	s := newStore(t, Options{now: fixedClock(now)})
	type step struct {
		at   time.Duration // after t0
		kind string
	}
	type span struct{ start, end time.Duration }
	tests := []struct {
		name     string
		events   []step
		from, to time.Duration
		zeroFrom bool
		want     []span
		window   time.Duration // the denominator of Fraction
	}{
		{name: "no events", from: 0, to: 4 * h, window: 4 * h},
		{name: "up then down", events: []step{{1 * h, KindUp}, {3 * h, KindDown}}, to: 4 * h,
			want: []span{{1 * h, 3 * h}}, window: 4 * h},
		{name: "up before the window", events: []step{{-1 * h, KindUp}, {1 * h, KindDown}}, to: 4 * h,
			want: []span{{0, 1 * h}}, window: 4 * h},
		{name: "up with no down lasts until to", events: []step{{1 * h, KindUp}}, to: 4 * h,
			want: []span{{1 * h, 4 * h}}, window: 4 * h},
		{name: "up with no down lasts until now", events: []step{{1 * h, KindUp}}, to: 48 * h,
			want: []span{{1 * h, 24 * h}}, window: 24 * h},
		{name: "down before the window, two ups", events: []step{{-2 * h, KindUp}, {-1 * h, KindDown}, {2 * h, KindUp}, {3 * h, KindDown}, {3*h + 30*time.Minute, KindUp}},
			to: 4 * h, want: []span{{2 * h, 3 * h}, {3*h + 30*time.Minute, 4 * h}}, window: 4 * h},
		{name: "a repeated up continues", events: []step{{1 * h, KindUp}, {2 * h, KindUp}, {3 * h, KindDown}}, to: 4 * h,
			want: []span{{1 * h, 3 * h}}, window: 4 * h},
		{name: "auth failures are ignored", events: []step{{-2 * h, KindUp}, {-1 * h, KindAuthFailed}, {1 * h, KindAuthFailed}, {2 * h, KindDown}},
			to: 4 * h, want: []span{{0, 2 * h}}, window: 4 * h},
		{name: "a down exactly at from", events: []step{{-1 * h, KindUp}, {0, KindDown}}, to: 4 * h, window: 4 * h},
		{name: "an up exactly at to is outside", events: []step{{4 * h, KindUp}}, to: 4 * h, window: 4 * h},
		{name: "a down without an up", events: []step{{1 * h, KindDown}}, to: 4 * h, window: 4 * h},
		{name: "an empty window", events: []step{{-1 * h, KindUp}}, from: 4 * h, to: 4 * h},
		{name: "zero from is the first event", events: []step{{2 * h, KindUp}, {3 * h, KindDown}}, zeroFrom: true, to: 6 * h,
			want: []span{{2 * h, 3 * h}}, window: 4 * h},
	}
	for i, tc := range tests {
		d := guid(i)
		for _, st := range tc.events {
			s.Add(ev(d, st.kind, t0.Add(st.at)))
		}
		// Another device's events never count.
		s.Add(ev(guid(1000+i), KindUp, t0))
		flush(t, s)
		t.Run(tc.name, func(t *testing.T) {
			from := t0.Add(tc.from)
			if tc.zeroFrom {
				from = time.Time{}
			}
			got, err := s.Availability(d, from, t0.Add(tc.to))
			if err != nil {
				t.Fatal(err)
			}
			var up time.Duration
			var want []Interval
			for _, sp := range tc.want {
				up += sp.end - sp.start
				want = append(want, Interval{t0.Add(sp.start), t0.Add(sp.end)})
			}
			if got.Up != up {
				t.Errorf("Up = %v; want %v", got.Up, up)
			}
			if len(got.Intervals) != len(want) {
				t.Fatalf("Intervals = %v; want %v", got.Intervals, want)
			}
			for j := range want {
				if !got.Intervals[j].Start.Equal(want[j].Start) || !got.Intervals[j].End.Equal(want[j].End) {
					t.Errorf("Intervals = %v; want %v", got.Intervals, want)
				}
			}
			var frac float64
			if tc.window > 0 {
				frac = float64(up) / float64(tc.window)
			}
			if got.Fraction != frac {
				t.Errorf("Fraction = %v; want %v", got.Fraction, frac)
			}
		})
	}
}

func TestSessions(t *testing.T) {
	s := newStore(t, Options{})
	rec := func(id uint64, dev, user string, start time.Duration) SessionRecord {
		return SessionRecord{
			ID: id, Kind: "socks5", Console: "192.0.2.1:40000", User: user, Device: dev,
			Host: "host-" + dev, Port: 16992, BytesToDevice: 100, BytesFromDevice: 2000,
			Start: t0.Add(start), End: t0.Add(start + time.Minute), EndReason: "console-closed",
		}
	}
	a, b := guid(1), guid(2)
	in := []SessionRecord{
		rec(1, a, "alice", 0),
		rec(2, b, "alice", time.Minute),
		rec(3, a, "bob", 2*time.Minute),
		rec(4, a, "", 3*time.Minute),
		rec(5, b, "bob", 4*time.Minute),
	}
	for _, r := range in {
		s.AddSession(r)
	}
	flush(t, s)
	ids := func(f Filter) []uint64 {
		t.Helper()
		got, err := s.Sessions(f)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, r := range got {
			out = append(out, r.ID)
		}
		return out
	}
	tests := []struct {
		f    Filter
		want []uint64
	}{
		{Filter{}, []uint64{1, 2, 3, 4, 5}},
		{Filter{Device: a}, []uint64{1, 3, 4}},
		{Filter{User: "alice"}, []uint64{1, 2}},
		{Filter{User: "bob", Device: b}, []uint64{5}},
		{Filter{Device: a, Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute)}, []uint64{3}},
		{Filter{Limit: 2}, []uint64{4, 5}},
		{Filter{User: "carol"}, nil},
	}
	for _, tc := range tests {
		if got := ids(tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Sessions(%+v) = %v; want %v", tc.f, got, tc.want)
		}
	}
	got, _ := s.Sessions(Filter{Device: b, User: "alice"})
	if len(got) != 1 || !reflect.DeepEqual(got[0], normalized(in[1])) {
		t.Errorf("Sessions(b, alice) = %+v; want %+v", got, in[1])
	}

	// Recording a session again (at its end) replaces it, index entries
	// included.
	open := rec(6, a, "alice", 10*time.Minute)
	open.End, open.EndReason, open.BytesFromDevice = time.Time{}, "", 0
	s.AddSession(open)
	flush(t, s)
	if got := ids(Filter{User: "alice"}); !reflect.DeepEqual(got, []uint64{1, 2, 6}) {
		t.Errorf("with an open session: %v; want [1 2 6]", got)
	}
	ended := rec(6, b, "bob", 10*time.Minute)
	s.AddSession(ended)
	flush(t, s)
	for _, tc := range []struct {
		f    Filter
		want []uint64
	}{
		{Filter{User: "alice"}, []uint64{1, 2}},
		{Filter{Device: a}, []uint64{1, 3, 4}},
		{Filter{User: "bob"}, []uint64{3, 5, 6}},
		{Filter{}, []uint64{1, 2, 3, 4, 5, 6}},
	} {
		if got := ids(tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("after replacing: Sessions(%+v) = %v; want %v", tc.f, got, tc.want)
		}
	}
}

// normalized returns r as the store returns it: times in local time.
func normalized(r SessionRecord) SessionRecord {
	r.Start = fromNanos(r.Start.UnixNano())
	if !r.End.IsZero() {
		r.End = fromNanos(r.End.UnixNano())
	}
	return r
}

func TestDevices(t *testing.T) {
	s := newStore(t, Options{})
	for i := range 20 {
		d := guid(19 - i)
		s.Add(ev(d, KindUp, t0.Add(time.Duration(i)*time.Minute)))
		s.Add(ev(d, KindDown, t0.Add(time.Duration(i)*time.Minute+time.Second)))
	}
	s.Add(ev(guid(5), KindUp, t0.Add(time.Hour)))
	flush(t, s)
	got, err := s.Devices()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 20 {
		t.Fatalf("Devices = %d; want 20", len(got))
	}
	for i, e := range got {
		if e.Device != guid(i) {
			t.Errorf("Devices[%d] = %s; want %s", i, e.Device, guid(i))
		}
		want := KindDown
		if i == 5 {
			want = KindUp
		}
		if e.Kind != want {
			t.Errorf("Devices[%d].Kind = %s; want %s", i, e.Kind, want)
		}
	}
}

func TestFindDevice(t *testing.T) {
	t0 := time.Unix(1_764_000_000, 0)
	devs := []TunnelEvent{
		{Device: "aaaaaaaa-0000-4000-8000-000000000001", Hostname: "shop-1", Time: t0},
		{Device: "bbbbbbbb-0000-4000-8000-000000000002", Hostname: "Shop-1", Time: t0.Add(time.Hour)}, // the name moved on
		{Device: "cccccccc-0000-4000-8000-000000000003", Hostname: "home", Time: t0},
	}
	for _, c := range []struct{ name, want string }{
		{"AAAAAAAA-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000001"},
		{"shop-1", "bbbbbbbb-0000-4000-8000-000000000002"},
		{"home.amt", "cccccccc-0000-4000-8000-000000000003"},
		{"office", ""},
	} {
		if got, ok := FindDevice(devs, c.name); got != c.want || ok != (c.want != "") {
			t.Errorf("FindDevice(%q) = %q, %v; want %q", c.name, got, ok, c.want)
		}
	}
}
