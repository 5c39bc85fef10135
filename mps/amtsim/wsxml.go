package amtsim

// Parsing of WS-Man requests. A request is hostile input: the body is
// capped before it gets here (WSManConfig MaxBody), and the parser caps
// the depth, the number of elements and attributes, and the text it
// keeps, so that a small body cannot make a large tree.

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"strconv"
	"strings"
)

// Limits of the request parser.
const (
	maxXMLDepth = 24   // a toolbox request nests about 8 deep
	maxXMLNodes = 2048 // elements per request
	maxXMLAttrs = 16   // attributes per element
	maxXMLText  = 8 << 10
)

var errXMLLimit = errors.New("amtsim: request XML exceeds the parser's limits")

// xnode is an element of a parsed request: its name, attributes, text
// (the character data directly inside it, trimmed) and children.
type xnode struct {
	space, local string
	attrs        []xml.Attr
	text         string
	kids         []*xnode
}

// parseXML parses one XML document into a tree, within the limits above.
func parseXML(b []byte) (*xnode, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	var (
		root  *xnode
		stack []*xnode
		texts []*strings.Builder // pointers: a Builder must not be copied as the slice grows
		nodes int
	)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			nodes++
			if len(stack) >= maxXMLDepth || nodes > maxXMLNodes || len(t.Attr) > maxXMLAttrs {
				return nil, errXMLLimit
			}
			if root != nil && len(stack) == 0 {
				return nil, errors.New("amtsim: more than one root element")
			}
			n := &xnode{space: t.Name.Space, local: t.Name.Local, attrs: t.Attr}
			if len(stack) > 0 {
				top := stack[len(stack)-1]
				top.kids = append(top.kids, n)
			} else {
				root = n
			}
			stack = append(stack, n)
			texts = append(texts, new(strings.Builder))
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, errors.New("amtsim: unbalanced XML")
			}
			top := stack[len(stack)-1]
			top.text = strings.TrimSpace(texts[len(texts)-1].String())
			stack, texts = stack[:len(stack)-1], texts[:len(texts)-1]
		case xml.CharData:
			if len(stack) > 0 {
				tb := texts[len(texts)-1]
				if tb.Len()+len(t) > maxXMLText {
					return nil, errXMLLimit
				}
				tb.Write(t)
			}
		}
	}
	if root == nil || len(stack) != 0 {
		return nil, errors.New("amtsim: no complete root element")
	}
	return root, nil
}

// child returns the first child named local, or nil. A nil n has none.
func (n *xnode) child(local string) *xnode {
	if n == nil {
		return nil
	}
	for _, k := range n.kids {
		if k.local == local {
			return k
		}
	}
	return nil
}

// textOf returns the text of the child named local, and whether it exists.
func (n *xnode) textOf(local string) (string, bool) {
	c := n.child(local)
	if c == nil {
		return "", false
	}
	return c.text, true
}

// attr returns the value of the attribute named local.
func (n *xnode) attr(local string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.attrs {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// wsRequest is what the handler reads of a request.
type wsRequest struct {
	action, resource, messageID string
	selectors                   map[string]string // the header's SelectorSet
	selectorNode                *xnode            // the SelectorSet itself, for EPR-valued selectors
	body                        *xnode            // the Body's first element, nil if empty
}

// parseRequest parses a SOAP envelope.
func parseRequest(b []byte) (*wsRequest, error) {
	root, err := parseXML(b)
	if err != nil {
		return nil, err
	}
	if root.local != "Envelope" {
		return nil, errors.New("amtsim: not a SOAP envelope")
	}
	hd := root.child("Header")
	r := &wsRequest{selectors: map[string]string{}}
	r.action, _ = hd.textOf("Action")
	r.resource, _ = hd.textOf("ResourceURI")
	r.messageID, _ = hd.textOf("MessageID")
	r.selectorNode = hd.child("SelectorSet")
	r.selectors = selectorSet(r.selectorNode)
	if body := root.child("Body"); body != nil && len(body.kids) > 0 {
		r.body = body.kids[0]
	}
	return r, nil
}

// selectorSet reads a SelectorSet's selectors by name.
func selectorSet(n *xnode) map[string]string {
	s := map[string]string{}
	if n == nil {
		return s
	}
	for _, k := range n.kids {
		if k.local == "Selector" {
			s[k.attr("Name")] = k.text
		}
	}
	return s
}

// epr is an endpoint reference parameter (ManagedElement, Source,
// BootConfigSetting): its resource URI and selectors.
type epr struct {
	resource  string
	selectors map[string]string
}

// parseEPR reads an EPR-valued parameter element; false if n is nil.
func parseEPR(n *xnode) (epr, bool) {
	if n == nil {
		return epr{}, false
	}
	rp := n.child("ReferenceParameters")
	e := epr{selectors: selectorSet(rp.child("SelectorSet"))}
	e.resource, _ = rp.textOf("ResourceURI")
	return e, true
}

// className returns the last path element of a resource URI.
func className(uri string) string {
	if i := strings.LastIndexByte(uri, '/'); i >= 0 {
		return uri[i+1:]
	}
	return uri
}

// label is how a Call shows an EPR argument.
func (e epr) label() string {
	if v, ok := e.selectors["InstanceID"]; ok {
		return v
	}
	if v, ok := e.selectors["Name"]; ok {
		return v
	}
	return className(e.resource)
}

// args flattens a method input or a Put body for a Call: simple children
// by text, EPR children by label. Repeated children keep the last.
func args(n *xnode) map[string]string {
	if n == nil || len(n.kids) == 0 {
		return nil
	}
	a := make(map[string]string, len(n.kids))
	for _, k := range n.kids {
		if k.child("ReferenceParameters") != nil {
			e, _ := parseEPR(k)
			a[k.local] = e.label()
		} else if k.local == "Password" || k.local == "Secret" {
			a[k.local] = "(hidden)" // secrets stay out of the call record
		} else {
			a[k.local] = k.text
		}
	}
	return a
}

// parseBool parses an xs:boolean.
func parseBool(s string) (bool, bool) {
	switch strings.TrimSpace(s) {
	case "true", "1":
		return true, true
	case "false", "0":
		return false, true
	}
	return false, false
}

// parseInt parses an integer parameter within [lo, hi].
func parseInt(s string, lo, hi int64) (int64, bool) {
	v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, false
	}
	return v, true
}
