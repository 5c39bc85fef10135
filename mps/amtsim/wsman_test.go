package amtsim

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func newWSMan(t *testing.T) (*httptest.Server, *wsman) {
	t.Helper()
	h := WSManHandler(WSManConfig{
		UUID:       testUUID,
		Hostname:   testHost,
		DomainName: "example.com",
		Password:   []byte(testAMTPass),
	})
	srv := httptest.NewServer(h) // listens on 127.0.0.1:0
	t.Cleanup(srv.Close)
	return srv, h.(*wsman)
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// digestAuthorization answers a digest challenge (RFC 7616, MD5,
// qop=auth). It is written independently of the handler's parser.
func digestAuthorization(t testing.TB, challenge, method, uri, user, pass string, nc int) string {
	t.Helper()
	if !strings.HasPrefix(challenge, "Digest ") {
		t.Fatalf("challenge %q is not Digest", challenge)
	}
	p := map[string]string{}
	for _, m := range challengeParam.FindAllStringSubmatch(challenge, -1) {
		p[m[1]] = m[2]
	}
	h := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	cnonce := "0a4f113b"
	ncs := fmt.Sprintf("%08x", nc)
	resp := h(h(user+":"+p["realm"]+":"+pass) + ":" + p["nonce"] + ":" + ncs + ":" + cnonce + ":auth:" + h(method+":"+uri))
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", qop=auth, nc=%s, cnonce="%s", response="%s"`,
		user, p["realm"], p["nonce"], uri, ncs, cnonce, resp)
}

func post(t *testing.T, url, auth string, body []byte) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/soap+xml;charset=UTF-8")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// digestPost does the 401 round trip and the authenticated request.
func digestPost(t *testing.T, url, user, pass string, body []byte) (*http.Response, string) {
	t.Helper()
	resp, _ := post(t, url, "", body)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated status %d; want 401", resp.StatusCode)
	}
	auth := digestAuthorization(t, resp.Header.Get("WWW-Authenticate"), "POST", "/wsman", user, pass, 1)
	return post(t, url, auth, body)
}

func TestWSManDigest(t *testing.T) {
	srv, _ := newWSMan(t)
	url := srv.URL + "/wsman"
	guid := PlatformGUID(testUUID)
	if guid != "44454C4C480010338039C8C04F335231" {
		t.Fatalf("PlatformGUID = %s", guid)
	}

	t.Run("challenge", func(t *testing.T) {
		resp, _ := post(t, url, "", WSManGetRequest(ResourceGeneralSettings, "uuid:1"))
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != 401 || !strings.Contains(ch, `realm="Digest:`+guid+`"`) || !strings.Contains(ch, `qop="auth"`) {
			t.Fatalf("status %d, challenge %q", resp.StatusCode, ch)
		}
	})
	t.Run("general settings", func(t *testing.T) {
		resp, body := digestPost(t, url, testUser, testAMTPass, WSManGetRequest(ResourceGeneralSettings, "uuid:abc"))
		for _, want := range []string{"<g:AMT_GeneralSettings>", "<g:HostName>" + testHost + "</g:HostName>",
			"<g:DomainName>example.com</g:DomainName>", guid, "<b:RelatesTo>uuid:abc</b:RelatesTo>", ActionGetResponse} {
			if !strings.Contains(body, want) {
				t.Errorf("response lacks %q", want)
			}
		}
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/soap+xml") {
			t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})
	t.Run("computer system package", func(t *testing.T) {
		resp, body := digestPost(t, url, testUser, testAMTPass, WSManGetRequest(ResourceComputerSystemPackage, "uuid:2"))
		if resp.StatusCode != 200 || !strings.Contains(body, "<h:PlatformGUID>"+guid+"</h:PlatformGUID>") {
			t.Fatalf("status %d, body %s", resp.StatusCode, body)
		}
	})
	t.Run("unknown resource", func(t *testing.T) {
		resp, body := digestPost(t, url, testUser, testAMTPass, WSManGetRequest("http://intel.com/wbem/wscim/1/amt-schema/1/AMT_Nope", "uuid:3"))
		if resp.StatusCode != 400 || !strings.Contains(body, "b:DestinationUnreachable") || !strings.Contains(body, "<a:Fault>") {
			t.Fatalf("status %d, body %s", resp.StatusCode, body)
		}
	})
	t.Run("not a get", func(t *testing.T) {
		body := bytes.Replace(WSManGetRequest(ResourceGeneralSettings, "x"), []byte("transfer/Get"), []byte("transfer/Put"), 1)
		resp, out := digestPost(t, url, testUser, testAMTPass, body)
		if resp.StatusCode != 400 || !strings.Contains(out, "ActionNotSupported") {
			t.Fatalf("status %d, body %s", resp.StatusCode, out)
		}
	})
	t.Run("not xml", func(t *testing.T) {
		resp, _ := digestPost(t, url, testUser, testAMTPass, []byte("hello"))
		if resp.StatusCode != 400 {
			t.Fatalf("status %d; want 400", resp.StatusCode)
		}
	})
	t.Run("body too large", func(t *testing.T) {
		resp, _ := digestPost(t, url, testUser, testAMTPass, make([]byte, defaultMaxBody+1))
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d; want 413", resp.StatusCode)
		}
	})
	for name, creds := range map[string][2]string{
		"wrong password": {testUser, "nope"},
		"wrong user":     {"root", testAMTPass},
	} {
		t.Run(name, func(t *testing.T) {
			resp, _ := digestPost(t, url, creds[0], creds[1], WSManGetRequest(ResourceGeneralSettings, "x"))
			if resp.StatusCode != 401 {
				t.Fatalf("status %d; want 401", resp.StatusCode)
			}
		})
	}
	t.Run("uri mismatch", func(t *testing.T) {
		resp, _ := post(t, url, "", nil)
		auth := digestAuthorization(t, resp.Header.Get("WWW-Authenticate"), "POST", "/other", testUser, testAMTPass, 1)
		if resp, _ := post(t, url, auth, WSManGetRequest(ResourceGeneralSettings, "x")); resp.StatusCode != 401 {
			t.Fatalf("status %d; want 401", resp.StatusCode)
		}
	})
	t.Run("method and path", func(t *testing.T) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("GET status %d; want 405", resp.StatusCode)
		}
		if resp, _ := post(t, srv.URL+"/other", "", nil); resp.StatusCode != 404 {
			t.Fatalf("POST /other status %d; want 404", resp.StatusCode)
		}
	})
}

func TestWSManStaleNonce(t *testing.T) {
	srv, h := newWSMan(t)
	old := fmt.Sprintf(`Digest realm="%s", nonce="%s", qop="auth"`, h.realm, h.nonce(time.Now().Add(-time.Hour)))
	auth := digestAuthorization(t, old, "POST", "/wsman", testUser, testAMTPass, 1)
	resp, _ := post(t, srv.URL+"/wsman", auth, WSManGetRequest(ResourceGeneralSettings, "x"))
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `stale="true"`) {
		t.Fatalf("status %d, challenge %q; want 401 with stale=true", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// A nonce from another handler (another key) is not ours at all.
	other := WSManHandler(WSManConfig{UUID: testUUID, Password: []byte(testAMTPass)}).(*wsman)
	foreign := fmt.Sprintf(`Digest realm="%s", nonce="%s", qop="auth"`, h.realm, other.nonce(time.Now()))
	auth = digestAuthorization(t, foreign, "POST", "/wsman", testUser, testAMTPass, 1)
	if resp, _ := post(t, srv.URL+"/wsman", auth, nil); resp.StatusCode != 401 || strings.Contains(resp.Header.Get("WWW-Authenticate"), `stale="true"`) {
		t.Fatalf("foreign nonce: status %d, challenge %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestWSManNoPassword(t *testing.T) {
	srv := httptest.NewServer(WSManHandler(WSManConfig{UUID: testUUID}))
	defer srv.Close()
	resp, _ := digestPost(t, srv.URL+"/wsman", DefaultAMTUser, "", WSManGetRequest(ResourceGeneralSettings, "x"))
	if resp.StatusCode != 401 {
		t.Fatalf("status %d; want 401 when no password is configured", resp.StatusCode)
	}
}

func TestParseDigest(t *testing.T) {
	p, ok := parseDigest(`Digest username="a\"b", realm="r", nc=00000001, qop=auth`)
	if !ok || p["username"] != `a"b` || p["nc"] != "00000001" || p["qop"] != "auth" || p["realm"] != "r" {
		t.Fatalf("parseDigest = %v, %v", p, ok)
	}
	for _, bad := range []string{`Basic abc`, `Digest username="x`, `Digest =x`, `Digest a=1, a=2`} {
		if _, ok := parseDigest(bad); ok {
			t.Errorf("parseDigest(%q) succeeded", bad)
		}
	}
}

// TestWSManCurl talks to the handler with curl --digest, an independent
// digest client.
func TestWSManCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed (apt-get install -y curl)")
	}
	srv, _ := newWSMan(t)
	dir := t.TempDir()
	run := func(t *testing.T, user, pass, resource string) (int, string) {
		t.Helper()
		bodyFile := filepath.Join(dir, "req.xml")
		if err := os.WriteFile(bodyFile, WSManGetRequest(resource, "uuid:curl"), 0o600); err != nil {
			t.Fatal(err)
		}
		outFile := filepath.Join(dir, "resp.xml")
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		// Credentials go through a config on stdin, not argv.
		cmd := exec.CommandContext(ctx, curl, "-sS", "--digest", "-K", "-",
			"-H", "Content-Type: application/soap+xml;charset=UTF-8",
			"--data-binary", "@"+bodyFile, "-o", outFile, "-w", "%{http_code}", srv.URL+"/wsman")
		cmd.Stdin = strings.NewReader(fmt.Sprintf("user = \"%s:%s\"\n", user, pass))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("curl: %v %s", err, out)
		}
		var code int
		fmt.Sscanf(string(out), "%d", &code)
		b, _ := os.ReadFile(outFile)
		return code, string(b)
	}
	t.Run("right credentials", func(t *testing.T) {
		code, body := run(t, testUser, testAMTPass, ResourceGeneralSettings)
		if code != 200 || !strings.Contains(body, "<g:HostName>"+testHost+"</g:HostName>") || !strings.Contains(body, PlatformGUID(testUUID)) {
			t.Fatalf("status %d, body %s", code, body)
		}
		code, body = run(t, testUser, testAMTPass, ResourceComputerSystemPackage)
		if code != 200 || !strings.Contains(body, "<h:PlatformGUID>"+PlatformGUID(testUUID)+"</h:PlatformGUID>") {
			t.Fatalf("status %d, body %s", code, body)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		if code, _ := run(t, testUser, "wrong", ResourceGeneralSettings); code != 401 {
			t.Fatalf("status %d; want 401", code)
		}
	})
	t.Run("unknown resource", func(t *testing.T) {
		code, body := run(t, testUser, testAMTPass, "http://intel.com/wbem/wscim/1/amt-schema/1/AMT_Nope")
		if code != 400 || !strings.Contains(body, "DestinationUnreachable") {
			t.Fatalf("status %d, body %s", code, body)
		}
	})
}
