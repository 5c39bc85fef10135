package wsman

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strings"
)

// Namespaces and actions (§1.0).
const (
	nsSOAP        = "http://www.w3.org/2003/05/soap-envelope"
	nsAddressing  = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
	nsWSMan       = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
	nsEnumeration = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
	anonymous     = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

	actionGet       = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
	actionPut       = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Put"
	actionEnumerate = nsEnumeration + "/Enumerate"
	actionPull      = nsEnumeration + "/Pull"

	// Resource URI bases.
	baseAMT = "http://intel.com/wbem/wscim/1/amt-schema/1/"
	baseCIM = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
	baseIPS = "http://intel.com/wbem/wscim/1/ips-schema/1/"
)

// request is one WS-Man request. body is the content of the SOAP Body,
// already escaped.
type request struct {
	action   string
	resource string
	body     string
	// selectors is the header's w:SelectorSet, already escaped, or "".
	selectors string
	// idempotent requests may be sent again on a fresh connection when a
	// reused one turns out to be dead before any answer arrived.
	idempotent bool
}

// envelope writes the request's SOAP envelope (§1.0: OperationTimeout PT60S).
func (r *request) envelope(messageID string) []byte {
	var b bytes.Buffer
	b.Grow(700 + len(r.body))
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>`)
	b.WriteString(`<Envelope xmlns="` + nsSOAP + `" xmlns:a="` + nsAddressing + `" xmlns:w="` + nsWSMan + `" xmlns:n="` + nsEnumeration + `">`)
	b.WriteString(`<Header><a:Action>`)
	escape(&b, r.action)
	b.WriteString(`</a:Action><a:To>/wsman</a:To><w:ResourceURI>`)
	escape(&b, r.resource)
	b.WriteString(`</w:ResourceURI><a:MessageID>`)
	escape(&b, messageID)
	b.WriteString(`</a:MessageID><a:ReplyTo><a:Address>` + anonymous + `</a:Address></a:ReplyTo>`)
	b.WriteString(`<w:OperationTimeout>PT60S</w:OperationTimeout>`)
	b.WriteString(r.selectors)
	b.WriteString(`</Header><Body>`)
	b.WriteString(r.body)
	b.WriteString(`</Body></Envelope>`)
	return b.Bytes()
}

// escape writes s with XML escaping.
func escape(w *bytes.Buffer, s string) {
	if !strings.ContainsAny(s, "<>&'\"\r\n\t") {
		w.WriteString(s)
		return
	}
	xml.EscapeText(w, []byte(s))
}

// esc returns s with XML escaping.
func esc(s string) string {
	var b bytes.Buffer
	escape(&b, s)
	return b.String()
}

// element returns <h:name>value</h:name> with value escaped.
func element(name, value string) string {
	return "<h:" + name + ">" + esc(value) + "</h:" + name + ">"
}

// reference returns an endpoint reference to an instance of a CIM class,
// the form method parameters like ManagedElement take.
func reference(name, resource string, selectors ...string) string {
	var b strings.Builder
	b.WriteString("<h:" + name + "><a:Address>" + anonymous + "</a:Address><a:ReferenceParameters><w:ResourceURI>")
	b.WriteString(esc(resource))
	b.WriteString("</w:ResourceURI><w:SelectorSet>")
	for i := 0; i+1 < len(selectors); i += 2 {
		b.WriteString(`<w:Selector Name="` + esc(selectors[i]) + `">` + esc(selectors[i+1]) + `</w:Selector>`)
	}
	b.WriteString("</w:SelectorSet></a:ReferenceParameters></h:" + name + ">")
	return b.String()
}

// header is the part of a response header the client checks.
type header struct {
	Action    string `xml:"Action"`
	RelatesTo string `xml:"RelatesTo"`
}

// soapFault is a SOAP 1.2 fault (and the SOAP 1.1 fields, in case).
type soapFault struct {
	Code struct {
		Value   string `xml:"Value"`
		Subcode struct {
			Value   string `xml:"Value"`
			Subcode struct {
				Value string `xml:"Value"`
			} `xml:"Subcode"`
		} `xml:"Subcode"`
	} `xml:"Code"`
	Reason struct {
		Text []string `xml:"Text"`
	} `xml:"Reason"`
	Detail struct {
		FaultDetail string `xml:"FaultDetail"`
	} `xml:"Detail"`
	FaultCode   string `xml:"faultcode"`
	FaultString string `xml:"faultstring"`
}

func (f *soapFault) fault(status int) *Fault {
	e := &Fault{
		Status:  status,
		Code:    local(f.Code.Value),
		Subcode: local(f.Code.Subcode.Value),
		Detail:  strings.TrimSpace(f.Detail.FaultDetail),
	}
	if s := local(f.Code.Subcode.Subcode.Value); s != "" && e.Subcode == "" {
		e.Subcode = s
	}
	if len(f.Reason.Text) > 0 {
		e.Reason = strings.TrimSpace(f.Reason.Text[0])
	}
	if e.Code == "" {
		e.Code = local(f.FaultCode)
	}
	if e.Reason == "" {
		e.Reason = strings.TrimSpace(f.FaultString)
	}
	if e.Subcode == "" && strings.HasSuffix(e.Detail, "/InvalidResourceURI") {
		e.Subcode = "InvalidResourceURI"
	}
	const maxText = 256 // device text for a window and a log line
	if len(e.Reason) > maxText {
		e.Reason = e.Reason[:maxText]
	}
	if len(e.Detail) > maxText {
		e.Detail = e.Detail[:maxText]
	}
	return e
}

// local strips a namespace prefix from a QName.
func local(q string) string {
	q = strings.TrimSpace(q)
	if i := strings.LastIndexByte(q, ':'); i >= 0 {
		return q[i+1:]
	}
	return q
}

// guard is the token source of a decoder: it reads raw tokens and fails once
// the document is deeper or longer than the limits allow, before the decoder
// builds anything from them. The decoder on top of it checks nesting and
// resolves namespaces.
type guard struct {
	d         *xml.Decoder
	depth     int
	tokens    int
	maxDepth  int
	maxTokens int
}

var (
	errTooDeep       = errors.New("XML nested too deep")
	errTooManyTokens = errors.New("XML has too many tokens")
)

func (g *guard) Token() (xml.Token, error) {
	t, err := g.d.RawToken()
	if err != nil {
		return t, err
	}
	if g.tokens++; g.tokens > g.maxTokens {
		return nil, errTooManyTokens
	}
	switch t.(type) {
	case xml.StartElement:
		if g.depth++; g.depth > g.maxDepth {
			return nil, errTooDeep
		}
	case xml.EndElement:
		g.depth--
	}
	return t, nil
}

// newDecoder returns a decoder of b under the limits.
func (l *Limits) newDecoder(b []byte) *xml.Decoder {
	raw := xml.NewDecoder(bytes.NewReader(b))
	raw.Strict = true
	return xml.NewTokenDecoder(&guard{d: raw, maxDepth: l.MaxDepth, maxTokens: l.MaxTokens})
}

// decodeEnvelope decodes a response envelope. A Fault in the Body is
// returned as a *Fault (with status). Otherwise, when want is not empty, the
// Body's first element must have the local name want, and it is decoded
// into out (if out is not nil). It returns the header.
func (l *Limits) decodeEnvelope(b []byte, status int, want string, out any) (header, error) {
	var h header
	d := l.newDecoder(b)
	se, err := nextStart(d)
	if err != nil {
		return h, malformed("no SOAP envelope: %v", err)
	}
	if se.Name.Local != "Envelope" {
		return h, malformed("the document is %q, not a SOAP envelope", se.Name.Local)
	}
	for {
		se, err := nextStart(d)
		if err == io.EOF {
			return h, malformed("the envelope has no Body")
		}
		if err != nil {
			return h, malformed("%v", err)
		}
		switch se.Name.Local {
		case "Header":
			if err := d.DecodeElement(&h, &se); err != nil {
				return h, malformed("header: %v", err)
			}
		case "Body":
			return h, l.decodeBody(d, status, want, out)
		default:
			if err := d.Skip(); err != nil {
				return h, malformed("%v", err)
			}
		}
	}
}

func (l *Limits) decodeBody(d *xml.Decoder, status int, want string, out any) error {
	se, err := nextStart(d)
	if err == io.EOF {
		if want == "" {
			return nil
		}
		return malformed("the Body is empty; want %s", want)
	}
	if err != nil {
		return malformed("%v", err)
	}
	if se.Name.Local == "Fault" {
		var f soapFault
		if err := d.DecodeElement(&f, &se); err != nil {
			return malformed("fault: %v", err)
		}
		return f.fault(status)
	}
	if want == "" {
		return nil
	}
	if se.Name.Local != want {
		return malformed("the answer is %q; want %s", se.Name.Local, want)
	}
	if out == nil {
		return nil
	}
	if err := d.DecodeElement(out, &se); err != nil {
		return malformed("%s: %v", want, err)
	}
	return nil
}

// nextStart returns the next start element at the current level, or io.EOF
// when the enclosing element (or the document) ends first.
func nextStart(d *xml.Decoder) (xml.StartElement, error) {
	for {
		t, err := d.Token()
		if err != nil {
			return xml.StartElement{}, err
		}
		switch t := t.(type) {
		case xml.StartElement:
			return t, nil
		case xml.EndElement:
			return xml.StartElement{}, io.EOF
		}
	}
}
