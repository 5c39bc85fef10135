package cli

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	xproxy "golang.org/x/net/proxy"

	"github.com/presence-mps/presence/internal/launch"
	"github.com/presence-mps/presence/mps/amtsim"
	"github.com/presence-mps/presence/mps/api"
)

// Two instances as an admin sets them up: fleet invite on A, join on B,
// both served with their own ports and data dirs, B linked to A with
// --peer. A device on B is reached through A's SOCKS5 proxy, by Go's
// x/net/proxy, and its WS-Man answers with digest auth.
func TestFleetServeTwoInstances(t *testing.T) {
	dirA, _ := fileCA(t)
	const consolePW = "console-Pw-1"
	for _, a := range []struct{ kind, name, pw string }{{"cira", "dev", ciraPW}, {"console", "alice", consolePW}} {
		if r := run(t, a.pw+"\n", "account", "add", "--kind", a.kind, "--data-dir", dirA, a.name); r.code != 0 {
			t.Fatalf("account add: %+v", r)
		}
	}
	const pass = "the fleet's passphrase"
	bundle := filepath.Join(t.TempDir(), "fleet.bundle")
	if r := run(t, pass+"\n", "fleet", "invite", "--out", bundle, "--data-dir", dirA); r.code != 0 {
		t.Fatalf("invite: %+v", r)
	}
	dirB := filepath.Join(t.TempDir(), "b")
	if r := run(t, pass+"\n", "fleet", "join", "--in", bundle, "--cn", "127.0.0.1", "--data-dir", dirB, "--vault", "file"); r.code != 0 {
		t.Fatalf("join: %+v", r)
	}
	peerA := freePort(t)
	_, logsA := startServe(t, dirA, "--peer-addr", peerA)
	ciraB, logsB := startServe(t, dirB, "--peer-addr", freePort(t), "--peer", peerA)
	logsB.waitFor(t, "peer link up")
	infoA, err := launch.Dir(dirA).RunInfo()
	if err != nil || infoA.Peer != peerA {
		t.Fatalf("A's run info %+v, %v", infoA, err)
	}

	root := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(root, []byte(run(t, "", "cert", "export-root", "--data-dir", dirB).stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	const amtPW = "Amt-P4ssw0rd!"
	ctx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan int, 1)
	go func() {
		simDone <- Run(ctx, []string{"simulate", "--mps", ciraB, "--ca", root, "--user", "dev", "--amt-login", "--devices", "1", "--duration", "60s"},
			Env{Stdin: strings.NewReader(ciraPW + "\n" + amtPW + "\n"), Stdout: io.Discard, Stderr: io.Discard})
	}()
	defer func() { stopSim(); <-simDone }()

	// A lists B's device through the fleet.
	logsA.waitFor(t, "peer link up")
	var devs []api.DeviceInfo
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r := run(t, "", "devices", "--data-dir", dirB, "--format", "json"); r.code == 0 {
			json.Unmarshal([]byte(r.stdout), &devs)
		}
		if len(devs) == 1 && devs[0].Hostname != "" { // its ports (and host name) have settled
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the device never came up on B")
		}
	}
	socks, err := xproxy.SOCKS5("tcp", infoA.Proxy, &xproxy.Auth{User: "alice", Password: consolePW}, xproxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	// A hears of the device from B's event stream a moment after B has it.
	var res amtsim.WSManResult
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err = amtsim.WSManGet(wctx, func(ctx context.Context) (net.Conn, error) {
			return socks.(xproxy.ContextDialer).DialContext(ctx, "tcp", devs[0].Hostname+":16992")
		}, "admin", amtPW, amtsim.ResourceGeneralSettings)
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || res.Status != 200 || res.HostName != devs[0].Hostname {
		t.Fatalf("WS-Man of B's device through A's SOCKS5 proxy: %+v, %v\nA:\n%s", res, err, logsA.String())
	}
	// A's device list and fleet status show B's device and the link.
	r := run(t, "", "devices", "--data-dir", dirA)
	if r.code != 0 || !strings.Contains(r.stdout, "INSTANCE") || !strings.Contains(r.stdout, devs[0].UUID) {
		t.Fatalf("A's devices: %+v", r)
	}
	st := run(t, "", "fleet", "status", "--data-dir", dirA)
	if st.code != 0 || !strings.Contains(st.stdout, "(this one)") || !strings.Contains(st.stdout, "up since") {
		t.Fatalf("fleet status: %+v", st)
	}
	var fi api.FleetInfo
	if r := run(t, "", "fleet", "status", "--data-dir", dirA, "--format", "json"); json.Unmarshal([]byte(r.stdout), &fi) != nil ||
		len(fi.Peers) != 1 || !fi.Peers[0].Up || fi.Peers[0].Devices != 1 {
		t.Fatalf("fleet status json: %+v", fi)
	}
	// Each instance's entry is what AMT is given: B announces its own.
	if fi.Peers[0].Member.CIRAAddr != "127.0.0.1:"+strings.Split(ciraB, ":")[1] {
		t.Fatalf("B's MPS entry as A sees it: %+v", fi.Peers[0].Member)
	}
	// Nothing is away from home: B's device chose B.
	if r := run(t, "", "fleet", "send-home", "--data-dir", dirA); r.code != 0 || !strings.Contains(r.stdout, "No device here is away") {
		t.Fatalf("send-home: %+v", r)
	}
	if r := run(t, "", "fleet", "send-home", "--data-dir", dirA, "--rate", "0"); r.code != 2 {
		t.Fatalf("send-home --rate 0: %+v", r)
	}
}
