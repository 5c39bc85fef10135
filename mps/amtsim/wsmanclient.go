package amtsim

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
)

// WSManResult is the answer to [WSManGet].
type WSManResult struct {
	Status       int    // HTTP status of the authenticated request
	Body         string // the SOAP envelope
	HostName     string // AMT_GeneralSettings HostName, if present
	PlatformGUID string // CIM_ComputerSystemPackage PlatformGUID, if present
}

var digestParam = regexp.MustCompile(`(\w+)=(?:"([^"]*)"|([^\s,]+))`)

// WSManGet sends a WS-Man transfer Get of resourceURI to an AMT WS-Man
// service (port 16992) over connections from dial, the way a console does:
// the request, the 401 digest challenge, and the request again with an
// Authorization header (RFC 7616, MD5, qop=auth) on the same keep-alive
// connection. It is the client the demo and the end-to-end tests use.
func WSManGet(ctx context.Context, dial func(ctx context.Context) (net.Conn, error), user, password, resourceURI string) (WSManResult, error) {
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	body := WSManGetRequest(resourceURI, "uuid:"+randomHex(16))
	do := func(auth string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://amt:16992/wsman", bytes.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Content-Type", "application/soap+xml;charset=UTF-8")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp, b, err
	}
	resp, _, err := do("")
	if err != nil {
		return WSManResult{}, err
	}
	if resp.StatusCode != http.StatusUnauthorized {
		return WSManResult{}, fmt.Errorf("amtsim: WS-Man answered %d to an unauthenticated request; want a 401 challenge", resp.StatusCode)
	}
	auth, err := digestResponse(resp.Header.Get("WWW-Authenticate"), http.MethodPost, "/wsman", user, password)
	if err != nil {
		return WSManResult{}, err
	}
	resp, b, err := do(auth)
	if err != nil {
		return WSManResult{}, err
	}
	res := WSManResult{Status: resp.StatusCode, Body: string(b)}
	if resp.StatusCode != http.StatusOK {
		return res, fmt.Errorf("amtsim: WS-Man answered %s", resp.Status)
	}
	res.HostName = xmlField(b, "HostName")
	res.PlatformGUID = xmlField(b, "PlatformGUID")
	return res, nil
}

// digestResponse answers a digest challenge.
func digestResponse(challenge, method, uri, user, password string) (string, error) {
	scheme, rest, _ := strings.Cut(challenge, " ")
	if !strings.EqualFold(scheme, "Digest") {
		return "", errors.New("amtsim: the WS-Man challenge is not Digest")
	}
	p := map[string]string{}
	for _, m := range digestParam.FindAllStringSubmatch(rest, -1) {
		p[strings.ToLower(m[1])] = m[2] + m[3]
	}
	if p["nonce"] == "" || p["realm"] == "" {
		return "", errors.New("amtsim: the WS-Man challenge lacks a realm or nonce")
	}
	h := func(s string) string { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }
	cnonce, nc := randomHex(8), "00000001"
	resp := h(h(user+":"+p["realm"]+":"+password) + ":" + p["nonce"] + ":" + nc + ":" + cnonce + ":auth:" + h(method+":"+uri))
	s := fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", qop=auth, nc=%s, cnonce="%s", response="%s"`,
		user, p["realm"], p["nonce"], uri, nc, cnonce, resp)
	if o := p["opaque"]; o != "" {
		s += fmt.Sprintf(`, opaque="%s"`, o)
	}
	return s, nil
}

// xmlField returns the text of the first element with the local name name.
func xmlField(b []byte, name string) string {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == name {
			var v string
			if d.DecodeElement(&v, &se) == nil {
				return v
			}
			return ""
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
