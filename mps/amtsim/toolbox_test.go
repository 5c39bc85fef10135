package amtsim

// Tests of the toolbox classes over HTTP with digest authentication, with
// requests shaped like go-wsman-messages' and answers decoded with
// encoding/xml, apart from the handler's own parser.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// wsClient speaks WS-Man to one handler like a console: one 401, then the
// same nonce with a counting nc.
type wsClient struct {
	t         *testing.T
	url       string
	challenge string
	nc        int
	msgID     int
	header    http.Header // of the last answer
	h         *wsman
}

// toolbox starts a handler for a platform made from cfg, with a clock the
// test moves.
func toolbox(t *testing.T, cfg *AMTConfig) (*wsClient, *Platform, *atomic.Int64) {
	t.Helper()
	p, err := NewPlatform(cfg, testUUID, nil)
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC).UnixNano())
	p.now = func() time.Time { return time.Unix(0, clock.Load()) }
	h := WSManHandler(WSManConfig{UUID: testUUID, Hostname: testHost, Password: []byte(testAMTPass), Platform: p})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &wsClient{t: t, url: srv.URL + "/wsman", h: h.(*wsman)}, p, &clock
}

func (c *wsClient) send(body []byte) (int, string) {
	c.t.Helper()
	if c.challenge == "" {
		resp, _ := post(c.t, c.url, "", body)
		if resp.StatusCode != http.StatusUnauthorized {
			c.t.Fatalf("unauthenticated request: status %d; want 401", resp.StatusCode)
		}
		c.challenge = resp.Header.Get("WWW-Authenticate")
	}
	c.nc++
	resp, out := post(c.t, c.url, digestAuthorization(c.t, c.challenge, "POST", "/wsman", testUser, testAMTPass, c.nc), body)
	c.header = resp.Header
	return resp.StatusCode, out
}

// envelope builds a request the way go-wsman-messages does.
func (c *wsClient) envelope(action, class string, selectors []string, body string) []byte {
	c.msgID++
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns="http://www.w3.org/2003/05/soap-envelope">`)
	fmt.Fprintf(&b, `<Header><a:Action>%s</a:Action><a:To>/wsman</a:To><w:ResourceURI>%s</w:ResourceURI><a:MessageID>%d</a:MessageID><a:ReplyTo><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address></a:ReplyTo><w:OperationTimeout>PT60S</w:OperationTimeout>`,
		action, ResourceURI(class), c.msgID)
	if len(selectors) > 0 {
		b.WriteString(`<w:SelectorSet>`)
		for i := 0; i+1 < len(selectors); i += 2 {
			fmt.Fprintf(&b, `<w:Selector Name=%q>%s</w:Selector>`, selectors[i], selectors[i+1])
		}
		b.WriteString(`</w:SelectorSet>`)
	}
	b.WriteString(`</Header><Body>` + body + `</Body></Envelope>`)
	return []byte(b.String())
}

func (c *wsClient) get(class string, selectors ...string) (int, string) {
	c.t.Helper()
	return c.send(c.envelope(ActionGet, class, selectors, ""))
}

// put sends a Put of class with the given property elements.
func (c *wsClient) put(class, props string) (int, string) {
	c.t.Helper()
	return c.send(c.envelope(ActionPut, class, nil, fmt.Sprintf(`<h:%s xmlns:h=%q>%s</h:%s>`, class, ResourceURI(class), props, class)))
}

// invoke calls a method and returns its ReturnValue and the answer.
func (c *wsClient) invoke(class, method, input string) (int, string) {
	c.t.Helper()
	body := fmt.Sprintf(`<h:%s_INPUT xmlns:h=%q>%s</h:%s_INPUT>`, method, ResourceURI(class), input, method)
	status, out := c.send(c.envelope(ResourceURI(class)+"/"+method, class, nil, body))
	if status != http.StatusOK {
		c.t.Fatalf("%s.%s: status %d, %s", class, method, status, out)
	}
	out1 := bodyItem(c.t, out)
	if out1.name != method+"_OUTPUT" || out1.space != ResourceURI(class) {
		c.t.Fatalf("%s.%s answered {%s}%s; want {%s}%s_OUTPUT", class, method, out1.space, out1.name, ResourceURI(class), method)
	}
	if got := xmlText(c.t, out, "Action"); got != ResourceURI(class)+"/"+method+"Response" {
		c.t.Fatalf("%s.%s: Action %s", class, method, got)
	}
	rv, err := strconv.Atoi(out1.get("ReturnValue"))
	if err != nil {
		c.t.Fatalf("%s.%s: ReturnValue %q", class, method, out1.get("ReturnValue"))
	}
	return rv, out
}

// enumerate runs Enumerate and Pulls of max elements until EndOfSequence
// and returns the items and the number of Pulls.
func (c *wsClient) enumerate(class string, max int) ([]xitem, int) {
	c.t.Helper()
	status, out := c.send(c.envelope(ActionEnumerate, class, nil, `<Enumerate xmlns="http://schemas.xmlsoap.org/ws/2004/09/enumeration" />`))
	if status != http.StatusOK || xmlText(c.t, out, "Action") != ActionEnumerateResponse {
		c.t.Fatalf("Enumerate %s: status %d, %s", class, status, out)
	}
	ctx := xmlText(c.t, out, "EnumerationContext")
	var all []xitem
	for pulls := 1; pulls < 100; pulls++ {
		body := fmt.Sprintf(`<Pull xmlns="http://schemas.xmlsoap.org/ws/2004/09/enumeration"><EnumerationContext>%s</EnumerationContext><MaxElements>%d</MaxElements><MaxCharacters>99999</MaxCharacters></Pull>`, ctx, max)
		status, out := c.send(c.envelope(ActionPull, class, nil, body))
		if status != http.StatusOK || xmlText(c.t, out, "Action") != ActionPullResponse {
			c.t.Fatalf("Pull %s: status %d, %s", class, status, out)
		}
		got := items(c.t, out)
		if len(got) > max {
			c.t.Fatalf("Pull %s with MaxElements %d returned %d items", class, max, len(got))
		}
		all = append(all, got...)
		if strings.Contains(out, "EndOfSequence") {
			return all, pulls
		}
		ctx = xmlText(c.t, out, "EnumerationContext")
	}
	c.t.Fatalf("Pull %s never ended", class)
	return nil, 0
}

// eprParam renders an EPR parameter as go-wsman-messages does.
func eprParam(name, class string, selectors ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<h:%s><Address xmlns="http://schemas.xmlsoap.org/ws/2004/08/addressing">http://schemas.xmlsoap.org/ws/2004/08/addressing</Address><ReferenceParameters xmlns="http://schemas.xmlsoap.org/ws/2004/08/addressing"><ResourceURI xmlns="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">%s</ResourceURI><SelectorSet xmlns="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">`, name, ResourceURI(class))
	for i := 0; i+1 < len(selectors); i += 2 {
		fmt.Fprintf(&b, `<Selector Name=%q>%s</Selector>`, selectors[i], selectors[i+1])
	}
	fmt.Fprintf(&b, `</SelectorSet></ReferenceParameters></h:%s>`, name)
	return b.String()
}

var managedSystem = eprParam("ManagedElement", "CIM_ComputerSystem", "CreationClassName", "CIM_ComputerSystem", "Name", "ManagedSystem")

func (c *wsClient) power(state int) int {
	c.t.Helper()
	rv, _ := c.invoke("CIM_PowerManagementService", "RequestPowerStateChange", fmt.Sprintf("<h:PowerState>%d</h:PowerState>", state)+managedSystem)
	return rv
}

// powerState reads the power state as Console does.
func (c *wsClient) powerState() (int, []string) {
	c.t.Helper()
	it, _ := c.enumerate("CIM_ServiceAvailableToElement", 999)
	if len(it) != 1 || it[0].name != "CIM_AssociatedPowerManagementService" {
		c.t.Fatalf("CIM_ServiceAvailableToElement items %+v; want one CIM_AssociatedPowerManagementService", it)
	}
	s, _ := strconv.Atoi(it[0].get("PowerState"))
	return s, it[0].fields["AvailableRequestedPowerStates"]
}

// --- answers, decoded with encoding/xml ---

// xitem is an instance in an answer: its name, namespace and fields.
type xitem struct {
	name, space string
	fields      map[string][]string
}

func (x xitem) get(f string) string {
	if v := x.fields[f]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// readItem reads the element that started with se: its simple children.
func readItem(d *xml.Decoder, se xml.StartElement) (xitem, error) {
	x := xitem{name: se.Name.Local, space: se.Name.Space, fields: map[string][]string{}}
	depth := 0
	var cur string
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return x, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 {
				cur = t.Name.Local
				text.Reset()
			}
		case xml.CharData:
			if depth == 1 {
				text.Write(t)
			}
		case xml.EndElement:
			if depth == 0 {
				return x, nil
			}
			if depth == 1 {
				x.fields[cur] = append(x.fields[cur], strings.TrimSpace(text.String()))
			}
			depth--
		}
	}
}

// items returns the children of a PullResponse's Items.
func items(t *testing.T, body string) []xitem {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(body))
	var out []xitem
	in := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("answer is not XML: %v\n%s", err, body)
		}
		switch se := tok.(type) {
		case xml.StartElement:
			if se.Name.Local == "Items" && se.Name.Space == nsEnumeration {
				in = true
			} else if in {
				x, err := readItem(d, se)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, x)
			}
		case xml.EndElement:
			if se.Name.Local == "Items" {
				in = false
			}
		}
	}
}

// bodyItem returns the Body's first child.
func bodyItem(t *testing.T, body string) xitem {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(body))
	inBody := false
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("no element in the Body: %v\n%s", err, body)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if inBody {
				x, err := readItem(d, se)
				if err != nil {
					t.Fatal(err)
				}
				return x
			}
			inBody = se.Name.Local == "Body" && se.Name.Space == nsSOAP
		}
	}
}

// xmlText returns the text of the first element named local.
func xmlText(t *testing.T, body, local string) string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == local {
			var v string
			if err := d.DecodeElement(&v, &se); err != nil {
				t.Fatalf("element %s: %v", local, err)
			}
			return v
		}
	}
}

// wantFault requires a SOAP fault with status 400 and the subcode.
func wantFault(t *testing.T, status int, body, subcode string) {
	t.Helper()
	if status != http.StatusBadRequest || xmlText(t, body, "Action") != actionFault {
		t.Fatalf("status %d, %s; want a fault with 400", status, body)
	}
	d := xml.NewDecoder(strings.NewReader(body))
	for {
		tok, err := d.Token()
		if err != nil {
			t.Fatalf("no Subcode in %s", body)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "Subcode" {
			var sc struct {
				Value string `xml:"Value"`
			}
			d.DecodeElement(&sc, &se)
			if _, local, _ := strings.Cut(sc.Value, ":"); local != subcode {
				t.Fatalf("fault subcode %q; want %s", sc.Value, subcode)
			}
			return
		}
	}
}

// --- the record layouts, decoded independently ---

type eventRec struct {
	time                                       uint32
	sensorType, eventType, offset, source, sev byte
	entity, instance                           byte
	data                                       [8]byte
}

func decodeEvent(t *testing.T, s string) eventRec {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 21 {
		t.Fatalf("event record %q: %d bytes, %v; want 21", s, len(b), err)
	}
	r := eventRec{time: binary.LittleEndian.Uint32(b), sensorType: b[5], eventType: b[6], offset: b[7], source: b[8], sev: b[9], entity: b[11], instance: b[12]}
	if b[4] != 0xFF || b[10] != 0xFF {
		t.Fatalf("event record % x: DeviceAddress and SensorNumber %x %x; want ff", b, b[4], b[10])
	}
	copy(r.data[:], b[13:])
	return r
}

type auditRec struct {
	app, event uint16
	initType   byte
	initiator  string
	time       uint32
	loc        byte
	addr       string
	ex         []byte
}

func decodeAudit(t *testing.T, s string) auditRec {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) < 12 {
		t.Fatalf("audit record %q: %v", s, err)
	}
	r := auditRec{app: binary.BigEndian.Uint16(b), event: binary.BigEndian.Uint16(b[2:]), initType: b[4]}
	i := 5
	lv := func() []byte {
		if i >= len(b) || i+1+int(b[i]) > len(b) {
			t.Fatalf("audit record % x: a length at %d runs past the end", b, i)
		}
		v := b[i+1 : i+1+int(b[i])]
		i += 1 + int(b[i])
		return v
	}
	switch r.initType {
	case 0:
		r.initiator = string(lv())
	case 2:
	default:
		t.Fatalf("audit record % x: initiator type %d", b, r.initType)
	}
	if i+5 > len(b) {
		t.Fatalf("audit record % x: short", b)
	}
	r.time = binary.BigEndian.Uint32(b[i:])
	r.loc = b[i+4]
	i += 5
	r.addr = string(lv())
	r.ex = lv()
	if i != len(b) {
		t.Fatalf("audit record % x: %d bytes left over", b, len(b)-i)
	}
	return r
}

// readAudit reads the whole audit log the way Console does.
func (c *wsClient) readAudit() []auditRec {
	c.t.Helper()
	var out []auditRec
	for start := 1; ; {
		rv, body := c.invoke("AMT_AuditLog", "ReadRecords", fmt.Sprintf("<h:StartIndex>%d</h:StartIndex>", start))
		if rv != 0 {
			c.t.Fatalf("ReadRecords(%d) = %d", start, rv)
		}
		o := bodyItem(c.t, body)
		total, _ := strconv.Atoi(o.get("TotalRecordCount"))
		n, _ := strconv.Atoi(o.get("RecordsReturned"))
		if n != len(o.fields["EventRecords"]) || n > 10 {
			c.t.Fatalf("ReadRecords(%d): RecordsReturned %d with %d records", start, n, len(o.fields["EventRecords"]))
		}
		for _, s := range o.fields["EventRecords"] {
			out = append(out, decodeAudit(c.t, s))
		}
		start += n
		if start > total || n == 0 {
			return out
		}
	}
}

// --- tests ---

func TestToolboxPowerState(t *testing.T) {
	c, _, _ := toolbox(t, nil)
	state, avail := c.powerState()
	if state != 2 || !slices.Equal(avail, []string{"10", "8", "5"}) {
		t.Fatalf("power state %d, available %v; want 2, [10 8 5]", state, avail)
	}
	// The item's namespace is its own class's.
	_, out := c.send(c.envelope(ActionGet, "CIM_AssociatedPowerManagementService", nil, ""))
	it := bodyItem(t, out)
	if it.space != ResourceURI("CIM_AssociatedPowerManagementService") || it.get("PowerState") != "2" {
		t.Fatalf("Get: {%s}%s %v", it.space, it.name, it.fields)
	}
	if !strings.Contains(out, "<c:Selector Name=\"Name\">ManagedSystem</c:Selector>") {
		t.Fatalf("UserOfService lacks the ManagedSystem reference: %s", out)
	}
	if got := c.header.Get("Server"); got != "Intel(R) Active Management Technology 11.8.55" {
		t.Fatalf("Server header %q", got)
	}
}

func TestToolboxPowerActions(t *testing.T) {
	type step struct {
		action, wantRV, wantState int
	}
	for _, tc := range []struct {
		name  string
		cfg   *AMTConfig
		steps []step
	}{
		{"on off reset", nil, []step{
			{PowerOn, 2, 2},        // already on
			{PowerOffSoft, 0, 8},   // hard power down
			{PowerReset, 2, 8},     // a reset while off is refused
			{PowerCycle, 2, 8},     // so is a cycle
			{PowerOffSoft, 2, 8},   // and another power down
			{PowerOn, 0, 2},        // power up
			{PowerCycle, 0, 2},     // cycle
			{PowerReset, 0, 2},     // reset
			{PowerSleepDeep, 2, 2}, // AMT 11.8 has no sleep
			{PowerSoftOff, 2, 2},   // nor graceful power down
			{99, 36, 2},            // not a power state
		}},
		{"AMT 9 with agent", &AMTConfig{Version: "9", OSAgent: true}, []step{
			{PowerSleepDeep, 2, 2},
			{PowerSoftOff, 2, 2},
		}},
		{"AMT 16 without agent", &AMTConfig{Version: "16"}, []step{
			{PowerSleepDeep, 2, 2},
			{PowerSoftReset, 2, 2},
		}},
		{"AMT 16 with agent", &AMTConfig{Version: "16", OSAgent: true}, []step{
			{PowerSleepDeep, 0, 4},
			{PowerReset, 2, 4}, // asleep
			{PowerOn, 0, 2},    // wakes
			{PowerHibernate, 0, 7},
			{PowerOn, 0, 2},
			{PowerSoftReset, 0, 2},
			{PowerSoftOff, 0, 8},
			{PowerSoftOff, 2, 8},
		}},
		{"starts off", &AMTConfig{Off: true}, []step{
			{PowerReset, 2, 8},
			{PowerOn, 0, 2},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, p, _ := toolbox(t, tc.cfg)
			for i, s := range tc.steps {
				if rv := c.power(s.action); rv != s.wantRV {
					t.Fatalf("step %d: RequestPowerStateChange(%d) = %d; want %d", i, s.action, rv, s.wantRV)
				}
				if got, _ := c.powerState(); got != s.wantState || p.PowerState() != s.wantState {
					t.Fatalf("step %d: after %d the power state is %d (platform %d); want %d", i, s.action, got, p.PowerState(), s.wantState)
				}
			}
		})
	}
	t.Run("available actions follow the state", func(t *testing.T) {
		c, _, _ := toolbox(t, &AMTConfig{Version: "16", OSAgent: true})
		if _, avail := c.powerState(); !slices.Equal(avail, []string{"10", "8", "5", "4", "7", "14", "12"}) {
			t.Fatalf("on: available %v", avail)
		}
		c.power(PowerOffSoft)
		if _, avail := c.powerState(); !slices.Equal(avail, []string{"2"}) {
			t.Fatalf("off: available %v; want [2]", avail)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		c, _, _ := toolbox(t, nil)
		if rv, _ := c.invoke("CIM_PowerManagementService", "RequestPowerStateChange", "<h:PowerState>8</h:PowerState>"); rv != 36 {
			t.Fatalf("without ManagedElement: %d; want 36", rv)
		}
		if rv, _ := c.invoke("CIM_PowerManagementService", "RequestPowerStateChange", "<h:PowerState>eight</h:PowerState>"+managedSystem); rv != 36 {
			t.Fatalf("PowerState eight: %d; want 36", rv)
		}
	})
	t.Run("audit", func(t *testing.T) {
		c, _, _ := toolbox(t, nil)
		c.power(PowerOffSoft)
		c.power(PowerOn)
		c.power(PowerReset)
		recs := c.readAudit()
		var events []uint16
		for _, r := range recs {
			if r.app == 17 {
				events = append(events, r.event)
				if r.initType != 0 || r.initiator != testUser || r.addr != "127.0.0.1" {
					t.Errorf("power audit record %+v; want digest user %s from 127.0.0.1", r, testUser)
				}
			}
		}
		if !slices.Equal(events, []uint16{1, 0, 3}) {
			t.Fatalf("Remote Control events %v; want power down, up, reset [1 0 3]", events)
		}
	})
}

func TestToolboxIPSPowerManagementService(t *testing.T) {
	c, _, _ := toolbox(t, &AMTConfig{Version: "9.5"})
	status, out := c.get("IPS_PowerManagementService")
	wantFault(t, status, out, "DestinationUnreachable")
	if !strings.Contains(out, "InvalidResourceURI") {
		t.Fatalf("fault lacks the InvalidResourceURI detail: %s", out)
	}

	c, _, _ = toolbox(t, &AMTConfig{Version: "16"})
	status, out = c.get("IPS_PowerManagementService")
	if status != 200 || bodyItem(t, out).get("OSPowerSavingState") != "2" {
		t.Fatalf("AMT 16: status %d, %s", status, out)
	}
	rv, _ := c.invoke("IPS_PowerManagementService", "RequestOSPowerSavingStateChange", "<h:OSPowerSavingState>3</h:OSPowerSavingState>"+managedSystem)
	_, out = c.get("IPS_PowerManagementService")
	if rv != 0 || bodyItem(t, out).get("OSPowerSavingState") != "3" {
		t.Fatalf("RequestOSPowerSavingStateChange(3) = %d, then %s", rv, out)
	}
}

// TestToolboxBootSequence runs the boot-to-BIOS and PXE sequences of
// amt-toolbox.md §1.1 row 3 and checks the device's record call by call.
func TestToolboxBootSequence(t *testing.T) {
	c, p, _ := toolbox(t, nil)
	start := len(p.Calls())
	order := func(source string) int {
		in := ""
		if source != "" {
			in = eprParam("Source", "CIM_BootSourceSetting", "InstanceID", source)
		}
		rv, _ := c.invoke("CIM_BootConfigSetting", "ChangeBootOrder", in)
		return rv
	}
	role := func() int {
		rv, _ := c.invoke("CIM_BootService", "SetBootConfigRole",
			eprParam("BootConfigSetting", "CIM_BootConfigSetting", "InstanceID", BootConfig)+"<h:Role>1</h:Role>")
		return rv
	}
	// Boot to BIOS: clear, Get, Put, role, no order, reset.
	if rv := order(""); rv != 0 {
		t.Fatalf("ChangeBootOrder() = %d", rv)
	}
	status, out := c.get("AMT_BootSettingData")
	bs := bodyItem(t, out)
	if status != 200 || bs.get("BIOSSetup") != "false" || bs.get("InstanceID") != "Intel(r) AMT:BootSettingData 0" || bs.get("OptionsCleared") != "true" {
		t.Fatalf("Get AMT_BootSettingData: %d %v", status, bs.fields)
	}
	status, out = c.put("AMT_BootSettingData", "<h:BIOSPause>false</h:BIOSPause><h:BIOSSetup>true</h:BIOSSetup><h:BootMediaIndex>0</h:BootMediaIndex>"+
		"<h:ElementName>Intel(r) AMT Boot Configuration Settings</h:ElementName><h:IDERBootDevice>0</h:IDERBootDevice><h:InstanceID>Intel(r) AMT:BootSettingData 0</h:InstanceID>"+
		"<h:UseIDER>false</h:UseIDER><h:UseSOL>false</h:UseSOL>")
	if status != 200 || xmlText(t, out, "Action") != ActionPutResponse || bodyItem(t, out).get("BIOSSetup") != "true" {
		t.Fatalf("Put AMT_BootSettingData: %d %s", status, out)
	}
	if _, out := c.get("AMT_BootSettingData"); bodyItem(t, out).get("BIOSSetup") != "true" || bodyItem(t, out).get("OptionsCleared") != "false" {
		t.Fatalf("the boot settings were not kept: %s", out)
	}
	if rv := role(); rv != 0 {
		t.Fatalf("SetBootConfigRole = %d", rv)
	}
	if rv := c.power(PowerReset); rv != 0 {
		t.Fatalf("reset = %d", rv)
	}
	if n, what := p.Boots(); n != 1 || what != "bios setup" {
		t.Fatalf("after the reset: %d boots, the last %q; want 1, bios setup", n, what)
	}
	if _, out := c.get("AMT_BootSettingData"); bodyItem(t, out).get("BIOSSetup") != "false" || bodyItem(t, out).get("OptionsCleared") != "true" {
		t.Fatalf("BIOS did not clear the boot settings: %s", out)
	}
	if p.solScreen() != SOLBIOS {
		t.Fatal("a host in BIOS setup does not show the BIOS screen on SOL")
	}

	// PXE: clear, Get, Put (nothing set), role, order PXE, power cycle.
	order("")
	c.get("AMT_BootSettingData")
	c.put("AMT_BootSettingData", "<h:BIOSSetup>false</h:BIOSSetup>")
	role()
	if rv := order(BootSourcePXE); rv != 0 {
		t.Fatalf("ChangeBootOrder(PXE) = %d", rv)
	}
	c.power(PowerCycle)
	if _, what := p.Boots(); what != "pxe" {
		t.Fatalf("the last boot was %q; want pxe", what)
	}
	// Without clearing the order, the next reset boots PXE again
	// (DMT/mps#752).
	c.power(PowerReset)
	if _, what := p.Boots(); what != "pxe" {
		t.Fatalf("a reset after PXE without clearing booted %q; want pxe again", what)
	}
	order("")
	c.power(PowerReset)
	if _, what := p.Boots(); what != "normal" {
		t.Fatalf("after clearing the order a reset booted %q; want normal", what)
	}

	type want struct{ action, class, method, arg, val string }
	wants := []want{
		{"Invoke", "CIM_BootConfigSetting", "ChangeBootOrder", "Source", ""},
		{"Get", "AMT_BootSettingData", "", "", ""},
		{"Put", "AMT_BootSettingData", "", "BIOSSetup", "true"},
		{"Get", "AMT_BootSettingData", "", "", ""},
		{"Invoke", "CIM_BootService", "SetBootConfigRole", "Role", "1"},
		{"Invoke", "CIM_PowerManagementService", "RequestPowerStateChange", "PowerState", "10"},
		{"Get", "AMT_BootSettingData", "", "", ""},
		{"Invoke", "CIM_BootConfigSetting", "ChangeBootOrder", "Source", ""},
		{"Get", "AMT_BootSettingData", "", "", ""},
		{"Put", "AMT_BootSettingData", "", "BIOSSetup", "false"},
		{"Invoke", "CIM_BootService", "SetBootConfigRole", "BootConfigSetting", BootConfig},
		{"Invoke", "CIM_BootConfigSetting", "ChangeBootOrder", "Source", BootSourcePXE},
		{"Invoke", "CIM_PowerManagementService", "RequestPowerStateChange", "PowerState", "5"},
	}
	calls := p.Calls()[start:]
	for i, w := range wants {
		if i >= len(calls) {
			t.Fatalf("only %d calls recorded; want at least %d", len(calls), len(wants))
		}
		g := calls[i]
		if g.Action != w.action || g.Class != w.class || g.Method != w.method || g.ReturnValue != 0 || g.Fault != "" {
			t.Fatalf("call %d = %+v; want %s %s.%s", i, g, w.action, w.class, w.method)
		}
		if w.arg == "Source" && w.val == "" {
			if _, ok := g.Args["Source"]; ok {
				t.Fatalf("call %d: a clearing ChangeBootOrder has Source %q", i, g.Args["Source"])
			}
		} else if w.arg != "" && g.Args[w.arg] != w.val {
			t.Fatalf("call %d: Args[%s] = %q; want %q (all %v)", i, w.arg, g.Args[w.arg], w.val, g.Args)
		}
	}

	t.Run("bad boot input", func(t *testing.T) {
		if rv := order("Intel(r) AMT: Force Floppy Boot"); rv != 36 {
			t.Fatalf("ChangeBootOrder to an unknown source = %d; want 36", rv)
		}
		if rv := order(BootSourceHTTPS); rv != 36 {
			t.Fatalf("ChangeBootOrder to UEFI HTTPS on AMT 11.8 = %d; want 36", rv)
		}
		status, out := c.put("AMT_BootSettingData", "<h:IDERBootDevice>7</h:IDERBootDevice>")
		wantFault(t, status, out, "InvalidRepresentation")
		status, out = c.put("AMT_BootSettingData", "<h:BIOSSetup>maybe</h:BIOSSetup>")
		wantFault(t, status, out, "InvalidRepresentation")
		rv, _ := c.invoke("CIM_BootService", "SetBootConfigRole", eprParam("BootConfigSetting", "CIM_BootConfigSetting", "InstanceID", "other")+"<h:Role>1</h:Role>")
		if rv != 36 {
			t.Fatalf("SetBootConfigRole of another configuration = %d; want 36", rv)
		}
	})
	t.Run("capabilities and sources", func(t *testing.T) {
		_, out := c.get("AMT_BootCapabilities")
		if caps := bodyItem(t, out); caps.get("BIOSSetup") != "true" || caps.get("ForcePXEBoot") != "true" || caps.get("ForceUEFIHTTPSBoot") != "" {
			t.Fatalf("AMT 11.8 boot capabilities %v", caps.fields)
		}
		srcs, _ := c.enumerate("CIM_BootSourceSetting", 999)
		var ids []string
		for _, s := range srcs {
			ids = append(ids, s.get("InstanceID"))
		}
		if !slices.Contains(ids, BootSourcePXE) || slices.Contains(ids, BootSourceHTTPS) {
			t.Fatalf("boot sources %v", ids)
		}
		c16, _, _ := toolbox(t, &AMTConfig{Version: "16"})
		_, out = c16.get("AMT_BootCapabilities")
		if bodyItem(t, out).get("ForceUEFIHTTPSBoot") != "true" {
			t.Fatalf("AMT 16 lacks UEFI HTTPS boot: %s", out)
		}
	})
}

func TestToolboxVersionAndControlMode(t *testing.T) {
	for _, tc := range []struct {
		cfg           *AMTConfig
		version, mode string
		redirFW       [2]uint8
	}{
		{nil, "11.8.55", "1", [2]uint8{11, 8}},
		{&AMTConfig{Version: "12", ControlMode: CCM}, "12.0.45", "4", [2]uint8{12, 0}},
		{&AMTConfig{Version: "15"}, "15.0.35", "1", [2]uint8{15, 0}},
		{&AMTConfig{Version: "16.1.27", ControlMode: CCM}, "16.1.27", "4", [2]uint8{16, 1}},
	} {
		t.Run(tc.version, func(t *testing.T) {
			c, p, _ := toolbox(t, tc.cfg)
			ids, pulls := c.enumerate("CIM_SoftwareIdentity", 4)
			if len(ids) != 11 || pulls != 3 {
				t.Fatalf("CIM_SoftwareIdentity: %d items in %d pulls of 4; want 11 in 3", len(ids), pulls)
			}
			byID := map[string]string{}
			for _, it := range ids {
				byID[it.get("InstanceID")] = it.get("VersionString")
			}
			if byID["AMT"] != tc.version || byID["Flash"] != tc.version || byID["Sku"] == "" || byID["Build Number"] == "" {
				t.Fatalf("software identity %v; want AMT %s", byID, tc.version)
			}
			if _, out := c.get("CIM_SoftwareIdentity", "InstanceID", "AMT"); bodyItem(t, out).get("VersionString") != tc.version {
				t.Fatalf("Get with InstanceID AMT: %s", out)
			}
			setup, _ := c.enumerate("AMT_SetupAndConfigurationService", 999)
			if len(setup) != 1 || setup[0].get("ProvisioningMode") != tc.mode || setup[0].get("ProvisioningState") != "2" {
				t.Fatalf("setup and configuration %+v; want ProvisioningMode %s", setup, tc.mode)
			}
			if got := c.header.Get("Server"); got != "Intel(R) Active Management Technology "+tc.version {
				t.Fatalf("Server %q", got)
			}
			s := NewRedirServer(RedirConfig{Platform: p})
			if fw := [2]uint8{s.cfg.FWMajor, s.cfg.FWMinor}; fw != tc.redirFW {
				t.Fatalf("redirection firmware version %v; want %v", fw, tc.redirFW)
			}
		})
	}
}

func TestToolboxHardware(t *testing.T) {
	c, p, _ := toolbox(t, &AMTConfig{Hardware: func() *Hardware { h, _ := HardwareProfile("laptop"); return &h }()})
	_, out := c.get("CIM_Chassis")
	ch := bodyItem(t, out)
	if ch.get("Manufacturer") != "Presence Simulated Systems" || ch.get("Model") != "SimBook 14 G10" || ch.get("ChassisPackageType") != "10" || ch.get("SerialNumber") != p.serial {
		t.Fatalf("chassis %v", ch.fields)
	}
	_, out = c.get("CIM_Card")
	if card := bodyItem(t, out); card.get("Model") != "8B41" || card.get("SerialNumber") == "" {
		t.Fatalf("card %v", card.fields)
	}
	_, out = c.get("CIM_BIOSElement")
	if bios := bodyItem(t, out); bios.get("Version") != "V70 Ver. 01.07.02" || !strings.Contains(out, "<Datetime xmlns=\""+nsCommon+"\">2024-07-14T00:00:00Z</Datetime>") {
		t.Fatalf("BIOS %v\n%s", bios.fields, out)
	}
	mem, _ := c.enumerate("CIM_PhysicalMemory", 999)
	if len(mem) != 1 || mem[0].get("Capacity") != strconv.Itoa(16<<30) || mem[0].get("MemoryType") != "34" || mem[0].get("BankLabel") != "BANK 0" {
		t.Fatalf("memory %+v", mem)
	}
	cpu, _ := c.enumerate("CIM_Processor", 999)
	if len(cpu) != 1 || cpu[0].get("MaxClockSpeed") != "4900" || cpu[0].get("CurrentClockSpeed") != "1700" {
		t.Fatalf("processor %+v", cpu)
	}
	chip, _ := c.enumerate("CIM_Chip", 999)
	if len(chip) != 1 || !strings.Contains(chip[0].get("Version"), "Core(TM) Ultra 7") {
		t.Fatalf("chip %+v", chip)
	}
	media, _ := c.enumerate("CIM_MediaAccessDevice", 999)
	if len(media) != 1 || media[0].get("MaxMediaSize") != "1024000000" {
		t.Fatalf("media %+v", media)
	}
	pkgs, _ := c.enumerate("CIM_PhysicalPackage", 2)
	var names []string
	for _, it := range pkgs {
		names = append(names, it.name)
	}
	if !slices.Equal(names, []string{"CIM_Chassis", "CIM_Card", "CIM_PhysicalPackage"}) || pkgs[2].get("Model") != "SIMNVME 1TB PCIe Gen4" ||
		pkgs[2].space != ResourceURI("CIM_PhysicalPackage") || pkgs[0].space != ResourceURI("CIM_Chassis") {
		t.Fatalf("physical packages %+v", pkgs)
	}

	t.Run("another device has other serial numbers", func(t *testing.T) {
		u := testUUID
		u[0] ^= 0xFF
		q, _ := NewPlatform(nil, u, nil)
		if q.serial == p.serial {
			t.Fatalf("two devices share the serial %s", p.serial)
		}
	})
	t.Run("headless has no KVM", func(t *testing.T) {
		hw, _ := HardwareProfile("headless")
		c, _, _ := toolbox(t, &AMTConfig{Hardware: &hw})
		for _, class := range []string{"CIM_KVMRedirectionSAP", "IPS_KVMRedirectionSettingData"} {
			status, out := c.get(class)
			wantFault(t, status, out, "DestinationUnreachable")
		}
		mem, _ := c.enumerate("CIM_PhysicalMemory", 999)
		if len(mem) != 4 {
			t.Fatalf("headless memory: %d modules; want 4", len(mem))
		}
	})
}

func TestToolboxEventLog(t *testing.T) {
	c, p, clock := toolbox(t, &AMTConfig{EventLogRecords: 390})
	_, out := c.get("AMT_MessageLog")
	if ml := bodyItem(t, out); ml.get("CurrentNumberOfRecords") != "390" || ml.get("MaxNumberOfRecords") != "390" || ml.get("MaxRecordSize") != "21" {
		t.Fatalf("message log %v", ml.fields)
	}
	read := func(max int) ([]eventRec, int) {
		var recs []eventRec
		calls := 0
		for id := 1; ; calls++ {
			if rv, _ := c.invoke("AMT_MessageLog", "PositionToFirstRecord", ""); rv != 0 {
				t.Fatalf("PositionToFirstRecord = %d", rv)
			}
			rv, body := c.invoke("AMT_MessageLog", "GetRecords", fmt.Sprintf("<h:IterationIdentifier>%d</h:IterationIdentifier><h:MaxReadRecords>%d</h:MaxReadRecords>", id, max))
			o := bodyItem(t, body)
			if rv != 0 {
				t.Fatalf("GetRecords(%d, %d) = %d", id, max, rv)
			}
			for _, s := range o.fields["RecordArray"] {
				recs = append(recs, decodeEvent(t, s))
			}
			next, _ := strconv.Atoi(o.get("IterationIdentifier"))
			if next != id+len(o.fields["RecordArray"]) {
				t.Fatalf("GetRecords(%d) returned %d records and IterationIdentifier %d", id, len(o.fields["RecordArray"]), next)
			}
			if o.get("NoMoreRecords") == "true" {
				return recs, calls + 1
			}
			id = next
		}
	}
	recs, calls := read(390)
	if len(recs) != 390 || calls != 1 {
		t.Fatalf("read %d records in %d calls; want 390 in 1", len(recs), calls)
	}
	for i, r := range recs {
		if i > 0 && r.time > recs[i-1].time {
			t.Fatalf("record %d is newer than record %d: the log must come newest first", i, i-1)
		}
		if r.time == 0 || r.time == 0xFFFFFFFF || (r.sensorType != 0x0F && r.sensorType != 0x06) || r.eventType != 0x6F {
			t.Fatalf("record %d = %+v", i, r)
		}
	}
	if paged, calls := read(100); len(paged) != 390 || calls != 4 {
		t.Fatalf("read %d records in %d calls of 100; want 390 in 4", len(paged), calls)
	}

	// A reset logs a boot, newest first; the oldest records make room.
	clock.Add(int64(time.Minute))
	c.power(PowerReset)
	recs, _ = read(390)
	now := uint32(p.now().Unix())
	if len(recs) != 390 || recs[4].time != now || recs[4].sensorType != 0x0F || recs[0].data[1] != 0x13 {
		t.Fatalf("after a reset the newest records are %+v", recs[:5])
	}
	if rv, _ := c.invoke("AMT_MessageLog", "GetRecords", "<h:IterationIdentifier>392</h:IterationIdentifier><h:MaxReadRecords>10</h:MaxReadRecords>"); rv != 2 {
		t.Fatalf("GetRecords beyond the log = %d; want 2", rv)
	}
	if rv, _ := c.invoke("AMT_MessageLog", "GetRecords", "<h:IterationIdentifier>0</h:IterationIdentifier>"); rv != 2 {
		t.Fatalf("GetRecords(0) = %d; want 2", rv)
	}

	t.Run("empty", func(t *testing.T) {
		c, _, _ := toolbox(t, nil)
		rv, body := c.invoke("AMT_MessageLog", "GetRecords", "<h:IterationIdentifier>1</h:IterationIdentifier><h:MaxReadRecords>390</h:MaxReadRecords>")
		if o := bodyItem(t, body); rv != 0 || o.get("NoMoreRecords") != "true" || len(o.fields["RecordArray"]) != 0 {
			t.Fatalf("empty log: %d %v", rv, o.fields)
		}
	})
	t.Run("bigger than AMT's", func(t *testing.T) {
		c, _, _ := toolbox(t, &AMTConfig{EventLogRecords: 1000})
		if recs, calls := read2(t, c); len(recs) != 1000 || calls != 3 {
			t.Fatalf("read %d records in %d calls; want 1000 in 3 (390 a call at most)", len(recs), calls)
		}
	})
}

// read2 reads a whole event log with MaxReadRecords 999.
func read2(t *testing.T, c *wsClient) ([]string, int) {
	var recs []string
	for id, calls := 1, 1; ; calls++ {
		_, body := c.invoke("AMT_MessageLog", "GetRecords", fmt.Sprintf("<h:IterationIdentifier>%d</h:IterationIdentifier><h:MaxReadRecords>999</h:MaxReadRecords>", id))
		o := bodyItem(t, body)
		recs = append(recs, o.fields["RecordArray"]...)
		if o.get("NoMoreRecords") == "true" {
			return recs, calls
		}
		id, _ = strconv.Atoi(o.get("IterationIdentifier"))
	}
}

func TestToolboxAuditLog(t *testing.T) {
	c, p, _ := toolbox(t, nil)
	for range 12 {
		c.power(PowerReset)
	}
	recs := c.readAudit()
	if len(recs) != 13 || len(p.AuditRecords()) != 13 {
		t.Fatalf("%d audit records; want the provisioning record and 12 resets", len(recs))
	}
	if r := recs[0]; r.app != 16 || r.event != 1 || r.initType != 2 {
		t.Fatalf("first record %+v; want Security Admin 'provisioning completed' by the firmware", r)
	}
	for i, r := range recs[1:] {
		if r.app != 17 || r.event != 3 || r.initiator != testUser || r.time != uint32(p.now().Unix()) {
			t.Fatalf("record %d = %+v; want a reset by %s", i+1, r, testUser)
		}
	}
	_, out := c.get("AMT_AuditLog")
	if al := bodyItem(t, out); al.get("CurrentNumberOfRecords") != "13" || al.get("MaxNumberOfRecords") == "" {
		t.Fatalf("audit log %v", al.fields)
	}
	for _, start := range []int{0, 14} {
		if rv, _ := c.invoke("AMT_AuditLog", "ReadRecords", fmt.Sprintf("<h:StartIndex>%d</h:StartIndex>", start)); rv != 35 {
			t.Fatalf("ReadRecords(%d) = %d; want 35 (invalid index)", start, rv)
		}
	}

	t.Run("failed logins", func(t *testing.T) {
		c, p, _ := toolbox(t, nil)
		body := c.envelope(ActionGet, "AMT_GeneralSettings", nil, "")
		resp, _ := post(t, c.url, "", body)
		auth := digestAuthorization(t, resp.Header.Get("WWW-Authenticate"), "POST", "/wsman", testUser, "wrong", 1)
		if resp, _ := post(t, c.url, auth, body); resp.StatusCode != 401 {
			t.Fatalf("wrong password: %d", resp.StatusCode)
		}
		recs := c.readAudit()
		if r := recs[len(recs)-1]; r.app != 16 || r.event != 5 || r.initiator != testUser || !bytes.Equal(r.ex, []byte{0}) {
			t.Fatalf("last audit record %+v; want 'ACL access with invalid credentials' to Intel AMT", r)
		}
		ev := p.EventRecords()[0]
		if ev.EventSensorType != 6 || ev.EventOffset != 5 || ev.EventData[1] != 1 {
			t.Fatalf("newest event %+v; want an authentication failure, count 1", ev)
		}
	})
}

func TestToolboxConsent(t *testing.T) {
	c, p, clock := toolbox(t, &AMTConfig{ControlMode: CCM})
	p.randCode = func() int { return 42 }
	optIn := func() xitem {
		_, out := c.get("IPS_OptInService")
		return bodyItem(t, out)
	}
	if o := optIn(); o.get("OptInRequired") != "4294967295" || o.get("OptInState") != "0" || o.get("CanModifyOptInPolicy") != "0" {
		t.Fatalf("CCM opt-in service %v", o.fields)
	}
	send := func(code string) int {
		rv, _ := c.invoke("IPS_OptInService", "SendOptInCode", "<h:OptInCode>"+code+"</h:OptInCode>")
		return rv
	}
	if rv := send("42"); rv != 2 {
		t.Fatalf("SendOptInCode before StartOptIn = %d; want 2", rv)
	}
	if rv, _ := c.invoke("IPS_OptInService", "StartOptIn", ""); rv != 0 || p.ConsentCode() != "000042" || optIn().get("OptInState") != "2" {
		t.Fatalf("StartOptIn = %d, code %q, state %s", rv, p.ConsentCode(), optIn().get("OptInState"))
	}
	if rv, _ := c.invoke("IPS_OptInService", "StartOptIn", ""); rv != 2 {
		t.Fatalf("a second StartOptIn = %d; want 2 (not ready)", rv)
	}
	if rv := send("123456"); rv != 0x0812 {
		t.Fatalf("a wrong code = %d; want 0x0812", rv)
	}
	if rv := send("000042"); rv != 0 || optIn().get("OptInState") != "3" || p.ConsentCode() != "" {
		t.Fatalf("the right code = %d, state %s, code %q", rv, optIn().get("OptInState"), p.ConsentCode())
	}
	// Unused consent lapses after OptInCodeTimeout (120 s).
	clock.Add(int64(121 * time.Second))
	if s := optIn().get("OptInState"); s != "0" {
		t.Fatalf("consent 121 s later: state %s; want 0", s)
	}

	// Three wrong codes cancel the request.
	c.invoke("IPS_OptInService", "StartOptIn", "")
	for i, want := range []int{0x0812, 0x0812, 0x0812, 2} {
		if rv := send("1"); rv != want {
			t.Fatalf("wrong code %d = %d; want %d", i+1, rv, want)
		}
	}
	if p.ConsentCode() != "" || optIn().get("OptInState") != "0" {
		t.Fatal("three wrong codes did not cancel the request")
	}
	// A displayed code lapses after OptInDisplayTimeout (300 s).
	c.invoke("IPS_OptInService", "StartOptIn", "")
	clock.Add(int64(301 * time.Second))
	if p.ConsentCode() != "" {
		t.Fatal("the code is still shown after 301 s")
	}
	// Cancel.
	c.invoke("IPS_OptInService", "StartOptIn", "")
	if rv, _ := c.invoke("IPS_OptInService", "CancelOptIn", ""); rv != 0 || p.ConsentCode() != "" {
		t.Fatalf("CancelOptIn = %d", rv)
	}
	if rv, _ := c.invoke("IPS_OptInService", "CancelOptIn", ""); rv != 2 {
		t.Fatalf("CancelOptIn with nothing to cancel = %d; want 2", rv)
	}
	// CCM's policy is fixed.
	status, out := c.put("IPS_OptInService", "<h:OptInRequired>0</h:OptInRequired>")
	wantFault(t, status, out, "AccessDenied")
	status, out = c.put("IPS_KVMRedirectionSettingData", "<h:OptInPolicy>false</h:OptInPolicy>")
	wantFault(t, status, out, "AccessDenied")

	var consentEvents [][]byte
	for _, r := range c.readAudit() {
		if r.app == 30 {
			consentEvents = append(consentEvents, append([]byte{byte(r.event)}, r.ex...))
		}
	}
	if want := [][]byte{{1, 0}, {1, 1}}; !slices.EqualFunc(consentEvents, want, bytes.Equal) {
		t.Fatalf("opt-in audit events %v; want a success and a 'failed 3 times'", consentEvents)
	}

	t.Run("boot options need consent in CCM", func(t *testing.T) {
		c.put("AMT_BootSettingData", "<h:BIOSSetup>true</h:BIOSSetup>")
		c.invoke("CIM_BootService", "SetBootConfigRole", eprParam("BootConfigSetting", "CIM_BootConfigSetting", "InstanceID", BootConfig)+"<h:Role>1</h:Role>")
		if rv := c.power(PowerReset); rv != 0x0821 {
			t.Fatalf("a BIOS-setup reset without consent = %d; want 0x0821", rv)
		}
		if rv := c.power(PowerOffSoft); rv != 0 {
			t.Fatalf("a plain power down = %d; want 0 (no consent needed)", rv)
		}
		c.invoke("IPS_OptInService", "StartOptIn", "")
		send(p.ConsentCode())
		if rv := c.power(PowerOn); rv != 0 {
			t.Fatalf("a BIOS-setup power up with consent = %d", rv)
		}
		if _, what := p.Boots(); what != "bios setup" {
			t.Fatalf("booted %q; want bios setup", what)
		}
	})
	t.Run("ACM", func(t *testing.T) {
		c, p, _ := toolbox(t, nil)
		if _, out := c.get("IPS_OptInService"); bodyItem(t, out).get("OptInRequired") != "0" {
			t.Fatalf("ACM default policy: %s", out)
		}
		c.put("AMT_BootSettingData", "<h:BIOSSetup>true</h:BIOSSetup>")
		c.invoke("CIM_BootService", "SetBootConfigRole", eprParam("BootConfigSetting", "CIM_BootConfigSetting", "InstanceID", BootConfig)+"<h:Role>1</h:Role>")
		if rv := c.power(PowerReset); rv != 0 {
			t.Fatalf("ACM without a consent policy: reset = %d", rv)
		}
		if status, out := c.put("IPS_OptInService", "<h:OptInRequired>4294967295</h:OptInRequired>"); status != 200 {
			t.Fatalf("ACM policy change: %d %s", status, out)
		}
		if _, out := c.get("IPS_KVMRedirectionSettingData"); bodyItem(t, out).get("OptInPolicy") != "true" {
			t.Fatalf("KVM OptInPolicy after OptInRequired all: %s", out)
		}
		if p.consentNeeded(featureSOL) != true {
			t.Fatal("SOL needs no consent under OptInRequired all")
		}
		recs := c.readAudit()
		if r := recs[len(recs)-1]; r.app != 30 || r.event != 0 || !bytes.Equal(r.ex, []byte{0, 255}) {
			t.Fatalf("policy change audit %+v", r)
		}
		status, out := c.put("IPS_OptInService", "<h:OptInRequired>7</h:OptInRequired>")
		wantFault(t, status, out, "InvalidRepresentation")
	})
}

func TestToolboxRedirectionSwitches(t *testing.T) {
	c, p, _ := toolbox(t, nil)
	get := func(class string) xitem {
		_, out := c.get(class)
		return bodyItem(t, out)
	}
	if rs := get("AMT_RedirectionService"); rs.get("EnabledState") != "32771" || rs.get("ListenerEnabled") != "true" {
		t.Fatalf("redirection service %v", rs.fields)
	}
	if kvm := get("CIM_KVMRedirectionSAP"); kvm.get("EnabledState") != "2" {
		t.Fatalf("KVM SAP %v", kvm.fields)
	}
	if rv, _ := c.invoke("AMT_RedirectionService", "RequestStateChange", "<h:RequestedState>32769</h:RequestedState>"); rv != 0 || p.redirEnabled(redirSOL) || !p.redirEnabled(redirIDER) {
		t.Fatalf("RequestStateChange(32769 IDE-R only) = %d", rv)
	}
	if rv, _ := c.invoke("AMT_RedirectionService", "RequestStateChange", "<h:RequestedState>2</h:RequestedState>"); rv != 36 {
		t.Fatalf("RequestStateChange(2) = %d; want 36", rv)
	}
	if status, _ := c.put("AMT_RedirectionService", "<h:ListenerEnabled>false</h:ListenerEnabled>"); status != 200 || p.listenerEnabled() {
		t.Fatal("ListenerEnabled=false was not kept")
	}
	if kvm := get("CIM_KVMRedirectionSAP"); kvm.get("EnabledState") != "6" {
		t.Fatalf("KVM SAP with the listener off: EnabledState %s; want 6 (enabled but offline)", kvm.get("EnabledState"))
	}
	if rv, _ := c.invoke("CIM_KVMRedirectionSAP", "RequestStateChange", "<h:RequestedState>3</h:RequestedState>"); rv != 0 || get("CIM_KVMRedirectionSAP").get("EnabledState") != "3" {
		t.Fatalf("KVM disable = %d", rv)
	}
	status, _ := c.put("IPS_KVMRedirectionSettingData", "<h:Is5900PortEnabled>true</h:Is5900PortEnabled><h:SessionTimeout>10</h:SessionTimeout><h:RFBPassword>P@ssw0rd</h:RFBPassword>")
	if ks := get("IPS_KVMRedirectionSettingData"); status != 200 || ks.get("Is5900PortEnabled") != "true" || ks.get("SessionTimeout") != "10" || ks.get("RFBPassword") != "" {
		t.Fatalf("KVM settings after Put: %d %v", status, ks.fields)
	}
	if rv, _ := c.invoke("IPS_KVMRedirectionSettingData", "TerminateSession", ""); rv != 0 {
		t.Fatalf("TerminateSession = %d", rv)
	}
	var events []uint16
	for _, r := range c.readAudit() {
		if r.app == 18 {
			events = append(events, r.event)
		}
	}
	if !slices.Equal(events, []uint16{7, 11}) {
		t.Fatalf("redirection audit events %v; want SOL disabled, KVM disabled [7 11]", events)
	}
	if _, out := c.get("IPS_KVMRedirectionSettingData"); strings.Contains(out, "BackToBackFbMode") {
		t.Fatal("AMT 11.8 reports BackToBackFbMode, an AMT 16 setting")
	}
}

func TestToolboxFaults(t *testing.T) {
	c, p, _ := toolbox(t, nil)
	status, out := c.get("AMT_Nope")
	wantFault(t, status, out, "DestinationUnreachable")
	// A known class under another schema's base is unknown too.
	status, out = c.send(bytes.Replace(c.envelope(ActionGet, "AMT_BootSettingData", nil, ""), []byte(ResourceBaseAMT), []byte(ResourceBaseCIM), 1))
	wantFault(t, status, out, "DestinationUnreachable")
	status, out = c.send(c.envelope(ResourceURI("CIM_PowerManagementService")+"/Explode", "CIM_PowerManagementService", nil, ""))
	wantFault(t, status, out, "ActionNotSupported")
	status, out = c.send(c.envelope(ResourceURI("AMT_AuditLog")+"/RequestPowerStateChange", "CIM_PowerManagementService", nil, ""))
	wantFault(t, status, out, "ActionNotSupported")
	status, out = c.put("CIM_Chassis", "<h:Model>x</h:Model>")
	wantFault(t, status, out, "ActionNotSupported")
	status, out = c.send(c.envelope(ActionPut, "AMT_BootSettingData", nil, "<h:AMT_Other xmlns:h=\"x\"/>"))
	wantFault(t, status, out, "InvalidRepresentation")
	status, out = c.send(c.envelope(ActionPull, "CIM_Chassis", nil, `<Pull xmlns="`+nsEnumeration+`"><EnumerationContext>nope</EnumerationContext></Pull>`))
	wantFault(t, status, out, "InvalidEnumerationContext")
	status, out = c.get("CIM_SoftwareIdentity", "InstanceID", "Nope")
	wantFault(t, status, out, "InvalidSelectors")
	status, out = c.send(c.envelope(ResourceURI("IPS_OptInService")+"/StartOptIn", "IPS_OptInService", nil, "<h:Other_INPUT xmlns:h=\"x\"/>"))
	wantFault(t, status, out, "SchemaValidationError")
	calls := p.Calls()
	if last := calls[len(calls)-1]; last.Fault != "SchemaValidationError" || last.Class != "IPS_OptInService" {
		t.Fatalf("last call %+v", last)
	}

	t.Run("an enumeration of one element per pull", func(t *testing.T) {
		status, out := c.send(c.envelope(ActionEnumerate, "CIM_SoftwareIdentity", nil, ""))
		ctx := xmlText(t, out, "EnumerationContext")
		if status != 200 || !strings.HasSuffix(ctx, "-0000-0000-0000-000000000000") {
			t.Fatalf("Enumerate: %d, context %q", status, ctx)
		}
		// Without MaxElements a Pull returns one item.
		_, out = c.send(c.envelope(ActionPull, "CIM_SoftwareIdentity", nil, `<Pull xmlns="`+nsEnumeration+`"><EnumerationContext>`+ctx+`</EnumerationContext></Pull>`))
		if n := len(items(t, out)); n != 1 || strings.Contains(out, "EndOfSequence") {
			t.Fatalf("Pull without MaxElements: %d items", n)
		}
		// Release ends it.
		status, _ = c.send(c.envelope(ActionRelease, "CIM_SoftwareIdentity", nil, `<Release xmlns="`+nsEnumeration+`"><EnumerationContext>`+ctx+`</EnumerationContext></Release>`))
		if status != 200 {
			t.Fatalf("Release: %d", status)
		}
		status, out = c.send(c.envelope(ActionPull, "CIM_SoftwareIdentity", nil, `<Pull xmlns="`+nsEnumeration+`"><EnumerationContext>`+ctx+`</EnumerationContext></Pull>`))
		wantFault(t, status, out, "InvalidEnumerationContext")
	})
	t.Run("open enumerations are bounded", func(t *testing.T) {
		for range maxEnumContexts + 10 {
			c.send(c.envelope(ActionEnumerate, "CIM_Chassis", nil, ""))
		}
		p.mu.Lock()
		n := len(c.h.enums)
		p.mu.Unlock()
		if n > maxEnumContexts {
			t.Fatalf("%d open enumerations; want at most %d", n, maxEnumContexts)
		}
	})
}

func TestParseXMLLimits(t *testing.T) {
	deep := strings.Repeat("<a>", maxXMLDepth+1) + strings.Repeat("</a>", maxXMLDepth+1)
	if _, err := parseXML([]byte(deep)); err != errXMLLimit {
		t.Fatalf("depth %d: %v; want the limit", maxXMLDepth+1, err)
	}
	ok := strings.Repeat("<a>", maxXMLDepth) + strings.Repeat("</a>", maxXMLDepth)
	if _, err := parseXML([]byte(ok)); err != nil {
		t.Fatalf("depth %d: %v", maxXMLDepth, err)
	}
	wide := "<a>" + strings.Repeat("<b/>", maxXMLNodes) + "</a>"
	if _, err := parseXML([]byte(wide)); err != errXMLLimit {
		t.Fatalf("%d elements: %v; want the limit", maxXMLNodes+1, err)
	}
	for _, bad := range []string{"", "<a>", "<a></b>", "<a/><b/>", "text", `<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>`} {
		if _, err := parseXML([]byte(bad)); err == nil {
			t.Errorf("parseXML(%q) succeeded", bad)
		}
	}
}
