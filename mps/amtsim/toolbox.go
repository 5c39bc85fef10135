package amtsim

// The classes of amt-toolbox.md §1.1 as the simulated AMT serves them: their
// instances, built from the platform's state, and their methods and Puts,
// which change it. Property names and values follow real AMT's answers
// (GWM's fixtures and decoders); where AMT's behaviour is not documented,
// the comment says what the simulator assumes.

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// instance is one CIM instance: its class and its properties in order.
type instance struct {
	class string
	props []prop
}

// prop is a property: one element per value; raw values are XML already.
type prop struct {
	name string
	vals []string
	raw  bool
}

func newInstance(class string) *instance { return &instance{class: class} }

// set adds a property with its values (an array property has several).
func (in *instance) set(name string, vals ...string) {
	in.props = append(in.props, prop{name: name, vals: vals})
}

func (in *instance) setInt(name string, v int) { in.set(name, strconv.Itoa(v)) }

func (in *instance) setBool(name string, v bool) { in.set(name, strconv.FormatBool(v)) }

// raw adds a property whose content is XML (a reference or a datetime).
func (in *instance) raw(name, xml string) {
	in.props = append(in.props, prop{name: name, vals: []string{xml}, raw: true})
}

// value returns the first value of a simple property.
func (in *instance) value(name string) (string, bool) {
	for _, p := range in.props {
		if p.name == name && !p.raw && len(p.vals) > 0 {
			return p.vals[0], true
		}
	}
	return "", false
}

// write renders the instance with prefix, declaring the class's namespace
// on the element itself when local is set (items of enumerations, which
// may mix classes).
func (in *instance) write(b *strings.Builder, prefix string, local bool) {
	b.WriteString("<" + prefix + ":" + in.class)
	if local {
		b.WriteString(` xmlns:` + prefix + `="` + ResourceURI(in.class) + `"`)
	}
	b.WriteString(">")
	writeProps(b, prefix, in.props)
	b.WriteString("</" + prefix + ":" + in.class + ">")
}

func writeProps(b *strings.Builder, prefix string, props []prop) {
	for _, p := range props {
		for _, v := range p.vals {
			b.WriteString("<" + prefix + ":" + p.name + ">")
			if p.raw {
				b.WriteString(v)
			} else {
				esc(b, v)
			}
			b.WriteString("</" + prefix + ":" + p.name + ">")
		}
	}
}

func datetimeXML(t time.Time) string {
	return `<Datetime xmlns="` + nsCommon + `">` + t.UTC().Format("2006-01-02T15:04:05Z") + `</Datetime>`
}

// wsFault is a SOAP fault a class's code returns.
type wsFault struct {
	subcode, reason, detail string
}

func faultInvalidRepresentation(reason string) *wsFault {
	return &wsFault{subcode: "t:InvalidRepresentation", reason: reason}
}

// callCtx is one request's context for the classes' code, run with
// plat.mu held.
type callCtx struct {
	h    *wsman
	p    *Platform
	in   *xnode // the method's _INPUT or the Put's instance, nil if none
	user string // the authenticated user, for the audit log
	addr string // the console's address

	sel     map[string]string // the header's selectors
	selNode *xnode            // the header's SelectorSet, for EPR-valued selectors
	result  *instance         // set by a Put whose answer is not the first instance
	bare400 bool              // answer a bare HTTP 400, no body (enrolment.go)
}

// wsMethod runs a method; it returns the output properties (ReturnValue
// excluded) and the ReturnValue.
type wsMethod func(c *callCtx) ([]prop, int)

// wsClass is a class the simulated AMT serves.
type wsClass struct {
	name     string
	minMajor int                    // the first AMT version that has it
	absent   func(p *Platform) bool // true on platforms without it
	prefix   string                 // the prefix of Get answers, "h" if empty
	// instances returns the current instances (called with plat.mu held).
	instances func(h *wsman) []*instance
	put       func(c *callCtx) *wsFault // nil: Put is not supported
	methods   map[string]wsMethod
	// del deletes the instance the selectors name; nil: Delete is not
	// supported (enrolment.go).
	del func(c *callCtx, sel map[string]string) *wsFault
	// missingUnreachable answers a Get of a missing instance with
	// DestinationUnreachable, as AMT does for keyed instances.
	missingUnreachable bool
}

var wsClasses map[string]*wsClass

func init() {
	wsClasses = map[string]*wsClass{}
	for _, c := range append(toolboxClasses(), enrolmentClasses()...) {
		wsClasses[c.name] = c
	}
}

// lookup returns the class of a resource URI if this platform has it.
func (h *wsman) lookup(uri string) *wsClass {
	name := className(uri)
	c, ok := wsClasses[name]
	if !ok || uri != ResourceURI(name) || !h.plat.version.atLeast(c.minMajor) || (c.absent != nil && c.absent(h.plat)) {
		return nil
	}
	return c
}

// dispatch answers a parsed, authenticated request and records it in the
// platform's calls.
func (h *wsman) dispatch(rq *wsRequest, addr string) (int, string) {
	p := h.plat
	p.mu.Lock()
	defer p.mu.Unlock()
	call := Call{Time: p.now(), Class: className(rq.resource), Action: rq.action}
	status, out := h.dispatchLocked(rq, addr, &call)
	if rq.resource == "" {
		call.Class = ""
	}
	p.record(call)
	return status, out
}

func (h *wsman) dispatchLocked(rq *wsRequest, addr string, call *Call) (int, string) {
	fault := func(f wsFault) (int, string) {
		call.Fault = f.subcode[strings.IndexByte(f.subcode, ':')+1:]
		return http.StatusBadRequest, h.faultBody(rq.messageID, f.subcode, f.reason, f.detail)
	}
	switch rq.action {
	case ActionGet, ActionPut, ActionEnumerate, ActionPull, ActionRelease, ActionDelete:
		call.Action = rq.action[strings.LastIndexByte(rq.action, '/')+1:]
	}
	if f := h.refuseUnprovisioned(rq); f != nil {
		return fault(*f)
	}
	cls := h.lookup(rq.resource)
	if cls == nil {
		call.Class = rq.resource
		return fault(wsFault{"b:DestinationUnreachable",
			"No route can be determined to reach the destination role defined by the WS-Addressing To.",
			"http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/InvalidResourceURI"})
	}
	notSupported := wsFault{"b:ActionNotSupported", "The action is not supported by the service.", ""}
	ctx := &callCtx{h: h, p: h.plat, in: rq.body, user: h.cfg.User, addr: addr, sel: rq.selectors, selNode: rq.selectorNode}
	var b strings.Builder
	switch rq.action {
	case ActionGet:
		in := pick(cls.instances(h), rq.selectors)
		if in == nil && cls.missingUnreachable {
			return fault(*faultMissing())
		}
		if in == nil {
			return fault(wsFault{"c:InvalidSelectors", "The selectors for the resource are not valid.", ""})
		}
		h.getResponse(&b, ActionGetResponse, rq.messageID, cls, in)
	case ActionPut:
		if cls.put == nil {
			return fault(notSupported)
		}
		call.Args = args(rq.body)
		if rq.body == nil || rq.body.local != cls.name {
			return fault(*faultInvalidRepresentation("The body is not an instance of " + cls.name + "."))
		}
		if f := cls.put(ctx); f != nil {
			if ctx.bare400 {
				return http.StatusBadRequest, ""
			}
			return fault(*f)
		}
		res := ctx.result
		if res == nil {
			res = cls.instances(h)[0]
		}
		h.getResponse(&b, ActionPutResponse, rq.messageID, cls, res)
	case ActionDelete:
		if cls.del == nil {
			return fault(notSupported)
		}
		if f := cls.del(ctx, rq.selectors); f != nil {
			if ctx.bare400 {
				return http.StatusBadRequest, ""
			}
			return fault(*f)
		}
		h.header(&b, ActionDeleteResponse, rq.messageID, rq.resource, "")
		b.WriteString(`<a:Body></a:Body></a:Envelope>`)
	case ActionEnumerate:
		id := h.enumerate(cls.name, cls.instances(h))
		h.header(&b, ActionEnumerateResponse, rq.messageID, rq.resource, ` xmlns:g="`+nsEnumeration+`"`)
		b.WriteString(`<a:Body><g:EnumerateResponse><g:EnumerationContext>` + id + `</g:EnumerationContext></g:EnumerateResponse></a:Body></a:Envelope>`)
	case ActionPull:
		if f := h.pull(&b, rq, cls); f != nil {
			return fault(*f)
		}
	case ActionRelease:
		id, _ := rq.body.textOf("EnumerationContext")
		if _, ok := h.enums[id]; !ok {
			return fault(wsFault{"g:InvalidEnumerationContext", "The enumeration context is not valid.", ""})
		}
		h.dropEnum(id)
		h.header(&b, ActionReleaseResponse, rq.messageID, rq.resource, "")
		b.WriteString(`<a:Body></a:Body></a:Envelope>`)
	default:
		method, ok := strings.CutPrefix(rq.action, rq.resource+"/")
		m := cls.methods[method]
		if !ok || m == nil {
			return fault(notSupported)
		}
		call.Action, call.Method = "Invoke", method
		if rq.body != nil && rq.body.local != method+"_INPUT" {
			return fault(wsFault{"c:SchemaValidationError", "The body is not " + method + "_INPUT.", ""})
		}
		call.Args = args(rq.body)
		out, rv := m(ctx)
		call.ReturnValue = rv
		if ctx.bare400 {
			return http.StatusBadRequest, "" // AMT 19's answer to some bad input (enrolment.go)
		}
		h.header(&b, rq.resource+"/"+method+"Response", rq.messageID, rq.resource, ` xmlns:h="`+rq.resource+`"`)
		b.WriteString(`<a:Body><h:` + method + `_OUTPUT>`)
		writeProps(&b, "h", out)
		b.WriteString(`<h:ReturnValue>` + strconv.Itoa(rv) + `</h:ReturnValue></h:` + method + `_OUTPUT></a:Body></a:Envelope>`)
	}
	return http.StatusOK, b.String()
}

// getResponse renders a Get or Put answer.
func (h *wsman) getResponse(b *strings.Builder, action, relatesTo string, cls *wsClass, in *instance) {
	prefix := cls.prefix
	if prefix == "" {
		prefix = "h"
	}
	h.header(b, action, relatesTo, ResourceURI(cls.name), ` xmlns:`+prefix+`="`+ResourceURI(in.class)+`"`)
	b.WriteString(`<a:Body>`)
	in.write(b, prefix, false)
	b.WriteString(`</a:Body></a:Envelope>`)
}

// pick returns the instance whose properties match the selectors; a
// selector naming a property the instance lacks (a key AMT does not
// report) is ignored. No selectors pick the first instance.
func pick(ins []*instance, sel map[string]string) *instance {
	for _, in := range ins {
		match := true
		for k, v := range sel {
			if got, ok := in.value(k); ok && got != v {
				match = false
			}
		}
		if match {
			return in
		}
	}
	return nil
}

// enumerate opens an enumeration of items and returns its context, in
// AMT's form ("5E1A0000-0000-0000-0000-000000000000"). Called with
// plat.mu held.
func (h *wsman) enumerate(class string, items []*instance) string {
	if h.enums == nil {
		h.enums = map[string]*enumeration{}
	}
	if len(h.enumOrder) >= maxEnumContexts {
		h.dropEnum(h.enumOrder[0])
	}
	h.enumNext++
	id := fmt.Sprintf("%08X-0000-0000-0000-000000000000", h.enumNext)
	h.enums[id] = &enumeration{class: class, items: items}
	h.enumOrder = append(h.enumOrder, id)
	return id
}

func (h *wsman) dropEnum(id string) {
	delete(h.enums, id)
	if i := slices.Index(h.enumOrder, id); i >= 0 {
		h.enumOrder = slices.Delete(h.enumOrder, i, i+1)
	}
}

// pull answers a Pull: up to MaxElements items (1 if absent, as
// WS-Enumeration says), then EndOfSequence with the last ones.
func (h *wsman) pull(b *strings.Builder, rq *wsRequest, cls *wsClass) *wsFault {
	id, _ := rq.body.textOf("EnumerationContext")
	e, ok := h.enums[id]
	if rq.body == nil || rq.body.local != "Pull" || !ok || e.class != cls.name {
		return &wsFault{subcode: "g:InvalidEnumerationContext", reason: "The enumeration context is not valid."}
	}
	max := int64(1)
	if s, ok := rq.body.textOf("MaxElements"); ok {
		v, ok := parseInt(s, 1, 1<<31)
		if !ok {
			return &wsFault{subcode: "c:InvalidParameter", reason: "MaxElements is not a positive integer."}
		}
		max = min(v, maxPullElements)
	}
	end := min(e.pos+int(max), len(e.items))
	items := e.items[e.pos:end]
	e.pos = end
	h.header(b, ActionPullResponse, rq.messageID, rq.resource, ` xmlns:g="`+nsEnumeration+`"`)
	b.WriteString(`<a:Body><g:PullResponse>`)
	if len(items) > 0 {
		b.WriteString(`<g:Items>`)
		for _, in := range items {
			in.write(b, "h", true)
		}
		b.WriteString(`</g:Items>`)
	}
	if e.pos >= len(e.items) {
		h.dropEnum(id)
		b.WriteString(`<g:EndOfSequence/>`)
	} else {
		b.WriteString(`<g:EnumerationContext>` + id + `</g:EnumerationContext>`)
	}
	b.WriteString(`</g:PullResponse></a:Body></a:Envelope>`)
	return nil
}

// one wraps a single instance.
func one(f func(h *wsman) *instance) func(h *wsman) []*instance {
	return func(h *wsman) []*instance { return []*instance{f(h)} }
}

// service adds the properties every AMT service instance carries.
func service(in *instance, name, systemName string, enabled int) {
	in.set("CreationClassName", in.class)
	in.set("ElementName", name)
	in.setInt("EnabledState", enabled)
	in.set("Name", name)
	in.set("RequestedState", "12")
	in.set("SystemCreationClassName", "CIM_ComputerSystem")
	in.set("SystemName", systemName)
}

// methodInt reads a required integer parameter of a method.
func (c *callCtx) methodInt(name string, lo, hi int64) (int64, bool) {
	s, ok := c.in.textOf(name)
	if !ok {
		return 0, false
	}
	return parseInt(s, lo, hi)
}

// --- the classes ---

func toolboxClasses() []*wsClass {
	noKVM := func(p *Platform) bool { return p.hw.NoKVM }
	return []*wsClass{
		{name: "AMT_GeneralSettings", prefix: "g", instances: one((*wsman).generalSettings)},
		{name: "CIM_ComputerSystemPackage", instances: one((*wsman).computerSystemPackage)},

		// Power (rows 1, 2, 2b).
		{name: "CIM_AssociatedPowerManagementService", instances: one((*wsman).associatedPower)},
		{name: "CIM_ServiceAvailableToElement", instances: one((*wsman).associatedPower)},
		{name: "CIM_PowerManagementService", instances: one((*wsman).powerService),
			methods: map[string]wsMethod{"RequestPowerStateChange": requestPowerStateChange}},
		{name: "IPS_PowerManagementService", minMajor: 10, instances: one((*wsman).ipsPowerService),
			methods: map[string]wsMethod{"RequestOSPowerSavingStateChange": requestOSPowerSavingStateChange}},

		// Boot (row 3).
		{name: "AMT_BootCapabilities", instances: one((*wsman).bootCapabilities)},
		{name: "AMT_BootSettingData", instances: one((*wsman).bootSettingData), put: putBootSettingData},
		{name: "CIM_BootConfigSetting", instances: one((*wsman).bootConfigSetting),
			methods: map[string]wsMethod{"ChangeBootOrder": changeBootOrder}},
		{name: "CIM_BootSourceSetting", instances: (*wsman).bootSources},
		{name: "CIM_BootService", instances: one((*wsman).bootService),
			methods: map[string]wsMethod{"SetBootConfigRole": setBootConfigRole, "RequestStateChange": bootServiceStateChange}},

		// Redirection (row 4).
		{name: "AMT_RedirectionService", instances: one((*wsman).redirectionService), put: putRedirectionService,
			methods: map[string]wsMethod{"RequestStateChange": redirectionStateChange}},
		{name: "CIM_KVMRedirectionSAP", absent: noKVM, instances: one((*wsman).kvmSAP),
			methods: map[string]wsMethod{"RequestStateChange": kvmStateChange}},
		{name: "IPS_KVMRedirectionSettingData", absent: noKVM, instances: one((*wsman).kvmSettings), put: putKVMSettings,
			methods: map[string]wsMethod{"TerminateSession": func(*callCtx) ([]prop, int) { return nil, amtSuccess }}},

		// Consent (row 5).
		{name: "IPS_OptInService", instances: one((*wsman).optInService), put: putOptInService,
			methods: map[string]wsMethod{"StartOptIn": startOptIn, "SendOptInCode": sendOptInCode, "CancelOptIn": cancelOptIn}},

		// Version and control mode (row 6).
		{name: "CIM_SoftwareIdentity", instances: (*wsman).softwareIdentity},

		// Hardware (row 7).
		{name: "CIM_Chassis", instances: one((*wsman).chassis)},
		{name: "CIM_Card", instances: one((*wsman).card)},
		{name: "CIM_BIOSElement", instances: one((*wsman).bios)},
		{name: "CIM_PhysicalMemory", instances: (*wsman).memory},
		{name: "CIM_Chip", instances: one((*wsman).chip)},
		{name: "CIM_Processor", instances: one((*wsman).processor)},
		{name: "CIM_MediaAccessDevice", instances: (*wsman).mediaDevices},
		{name: "CIM_PhysicalPackage", instances: (*wsman).physicalPackages},

		// Logs (rows 9, 10).
		{name: "AMT_MessageLog", instances: one((*wsman).messageLog),
			methods: map[string]wsMethod{"GetRecords": getRecords, "PositionToFirstRecord": positionToFirstRecord}},
		{name: "AMT_AuditLog", instances: one((*wsman).auditLogInstance),
			methods: map[string]wsMethod{"ReadRecords": readRecords}},
	}
}

// --- power ---

func (h *wsman) associatedPower() *instance {
	p := h.plat
	in := newInstance("CIM_AssociatedPowerManagementService")
	var avail []string
	for _, s := range p.availablePowerStates() {
		avail = append(avail, strconv.Itoa(s))
	}
	in.set("AvailableRequestedPowerStates", avail...)
	in.setInt("PowerState", p.power)
	in.raw("ServiceProvided", eprXML("CIM_PowerManagementService", "CreationClassName", "CIM_PowerManagementService",
		"Name", "Intel(r) AMT Power Management Service", "SystemCreationClassName", "CIM_ComputerSystem", "SystemName", "Intel(r) AMT"))
	in.raw("UserOfService", eprXML("CIM_ComputerSystem", "CreationClassName", "CIM_ComputerSystem", "Name", "ManagedSystem"))
	return in
}

func (h *wsman) powerService() *instance {
	in := newInstance("CIM_PowerManagementService")
	service(in, "Intel(r) AMT Power Management Service", "Intel(r) AMT", 5)
	return in
}

func (h *wsman) ipsPowerService() *instance {
	in := newInstance("IPS_PowerManagementService")
	service(in, "Intel(r) AMT Power Management Service", "Intel(r) AMT", 5)
	in.setInt("OSPowerSavingState", h.plat.osSaving)
	return in
}

// managedSystem checks the ManagedElement reference of a power method: it
// must be there and name CIM_ComputerSystem.
func (c *callCtx) managedSystem() bool {
	e, ok := parseEPR(c.in.child("ManagedElement"))
	return ok && className(e.resource) == "CIM_ComputerSystem"
}

// requestPowerStateChange is CIM_PowerManagementService.RequestPowerStateChange
// (PowerState, ManagedElement); see [Platform.requestPowerStateChange].
func requestPowerStateChange(c *callCtx) ([]prop, int) {
	state, ok := c.methodInt("PowerState", 0, 65535)
	if !ok || !c.managedSystem() {
		return nil, amtInvalidParameter
	}
	return nil, c.p.requestPowerStateChange(int(state), c.user, c.addr)
}

// requestOSPowerSavingStateChange is IPS_PowerManagementService's (AMT 10
// and later): 2 full power or 3 OS power saving, while the host is on.
func requestOSPowerSavingStateChange(c *callCtx) ([]prop, int) {
	state, ok := c.methodInt("OSPowerSavingState", 0, 65535)
	if !ok || (state != 2 && state != 3) || !c.managedSystem() {
		return nil, amtInvalidParameter
	}
	if c.p.power != PowerOn {
		return nil, amtNotReady
	}
	c.p.osSaving = int(state)
	return nil, amtSuccess
}

// --- boot ---

func (h *wsman) bootCapabilities() *instance {
	v16 := h.plat.version.atLeast(16)
	in := newInstance("AMT_BootCapabilities")
	in.setBool("BIOSPause", true)
	in.setBool("BIOSReflash", true)
	in.setBool("BIOSSecureBoot", true)
	in.setBool("BIOSSetup", true)
	in.setBool("ConfigurationDataReset", false)
	in.set("ElementName", "Intel(r) AMT: Boot Capabilities")
	in.setBool("ForceCDorDVDBoot", true)
	in.setBool("ForceDiagnosticBoot", false)
	in.setBool("ForceFloppyBoot", false)
	in.setBool("ForceHardDriveBoot", true)
	in.setBool("ForceHardDriveSafeModeBoot", false)
	in.setBool("ForcePXEBoot", true)
	if v16 {
		in.setBool("ForceUEFIHTTPSBoot", true)
		in.setBool("ForceUEFILocalPBABoot", true)
		in.setBool("ForceWinREBoot", true)
	}
	in.setBool("ForcedProgressEvents", true)
	in.setBool("IDER", true)
	in.set("InstanceID", "Intel(r) AMT:BootCapabilities 0")
	in.setBool("KeyboardLock", true)
	if v16 {
		in.set("PlatformErase", "0")
	}
	in.setBool("PowerButtonLock", false)
	in.setBool("ResetButtonLock", false)
	in.setBool("SOL", true)
	in.setBool("SecureErase", false)
	in.setBool("SleepButtonLock", false)
	in.setBool("UserPasswordBypass", false)
	return in
}

func (h *wsman) bootSettingData() *instance {
	p, s := h.plat, h.plat.boot
	v16 := p.version.atLeast(16)
	in := newInstance("AMT_BootSettingData")
	in.set("BIOSLastStatus", "2", "0")
	in.setBool("BIOSPause", s.BIOSPause)
	in.setBool("BIOSSetup", s.BIOSSetup)
	in.setInt("BootMediaIndex", s.BootMediaIndex)
	in.set("BootguardStatus", "127")
	in.setBool("ConfigurationDataReset", s.ConfigurationDataReset)
	in.set("ElementName", "Intel(r) AMT Boot Configuration Settings")
	in.setBool("EnforceSecureBoot", s.EnforceSecureBoot)
	in.setInt("FirmwareVerbosity", s.FirmwareVerbosity)
	in.setBool("ForcedProgressEvents", s.ForcedProgressEvents)
	in.setInt("IDERBootDevice", s.IDERBootDevice)
	in.set("InstanceID", "Intel(r) AMT:BootSettingData 0")
	in.setBool("LockKeyboard", s.LockKeyboard)
	in.setBool("LockPowerButton", s.LockPowerButton)
	in.setBool("LockResetButton", s.LockResetButton)
	in.setBool("LockSleepButton", s.LockSleepButton)
	in.setBool("OptionsCleared", p.optsCleared)
	in.set("OwningEntity", "Intel(r) AMT")
	in.setBool("PlatformErase", s.PlatformErase)
	in.setBool("RPEEnabled", v16)
	in.set("RSEPassword", "")
	in.setBool("ReflashBIOS", s.ReflashBIOS)
	in.setBool("SecureBootControlEnabled", v16)
	in.setBool("SecureErase", s.SecureErase)
	in.setBool("UEFIHTTPSBootEnabled", v16)
	in.setBool("UEFILocalPBABootEnabled", v16)
	in.set("UefiBootNumberOfParams", "0")
	in.setBool("UseIDER", s.UseIDER)
	in.setBool("UseSOL", s.UseSOL)
	in.setBool("UseSafeMode", s.UseSafeMode)
	in.setBool("UserPasswordBypass", s.UserPasswordBypass)
	in.setBool("WinREBootEnabled", v16)
	return in
}

// putBootSettingData stores AMT_BootSettingData's writable properties; a
// property left out keeps its value, read-only ones are ignored, a value
// of the wrong type or range is refused. It is audited as "boot options
// set" and makes OptionsCleared false.
func putBootSettingData(c *callCtx) *wsFault {
	s := c.p.boot
	bools := map[string]*bool{
		"BIOSPause": &s.BIOSPause, "BIOSSetup": &s.BIOSSetup, "ConfigurationDataReset": &s.ConfigurationDataReset,
		"EnforceSecureBoot": &s.EnforceSecureBoot, "ForcedProgressEvents": &s.ForcedProgressEvents,
		"LockKeyboard": &s.LockKeyboard, "LockPowerButton": &s.LockPowerButton, "LockResetButton": &s.LockResetButton,
		"LockSleepButton": &s.LockSleepButton, "ReflashBIOS": &s.ReflashBIOS, "SecureErase": &s.SecureErase,
		"UseIDER": &s.UseIDER, "UseSOL": &s.UseSOL, "UseSafeMode": &s.UseSafeMode,
		"UserPasswordBypass": &s.UserPasswordBypass, "PlatformErase": &s.PlatformErase,
	}
	ints := map[string]struct {
		v      *int
		lo, hi int64
	}{
		"BootMediaIndex": {&s.BootMediaIndex, 0, 255}, "FirmwareVerbosity": {&s.FirmwareVerbosity, 0, 3},
		"IDERBootDevice": {&s.IDERBootDevice, 0, 1},
	}
	for _, k := range c.in.kids {
		if b, ok := bools[k.local]; ok {
			v, ok := parseBool(k.text)
			if !ok {
				return faultInvalidRepresentation(k.local + " is not a boolean.")
			}
			*b = v
		} else if f, ok := ints[k.local]; ok {
			v, ok := parseInt(k.text, f.lo, f.hi)
			if !ok {
				return faultInvalidRepresentation(fmt.Sprintf("%s is not an integer from %d to %d.", k.local, f.lo, f.hi))
			}
			*f.v = int(v)
		}
	}
	p := c.p
	p.boot, p.optsCleared = s, false
	p.auditRC(p.now(), 4, bootOptions(s, ""), c.user, c.addr)
	return nil
}

func (h *wsman) bootConfigSetting() *instance {
	in := newInstance("CIM_BootConfigSetting")
	in.set("ElementName", "Intel(r) AMT: Boot Configuration")
	in.set("InstanceID", BootConfig)
	return in
}

// bootSourceIDs are the platform's CIM_BootSourceSetting InstanceIDs.
func (p *Platform) bootSourceIDs() []string {
	ids := []string{BootSourceHDD, BootSourceCD, BootSourcePXE, BootSourceDiag}
	if p.version.atLeast(16) {
		ids = append(ids, BootSourceHTTPS)
	}
	return ids
}

func (h *wsman) bootSources() []*instance {
	structured := map[string]string{
		BootSourceHDD: "CIM:Hard-Disk:1", BootSourceCD: "CIM:CD/DVD:1", BootSourcePXE: "CIM:Network:1",
		BootSourceDiag: "Intel(r) AMT: Diagnostic:1", BootSourceHTTPS: "Intel(r) AMT: UEFI HTTPS:1",
	}
	var out []*instance
	for _, id := range h.plat.bootSourceIDs() {
		in := newInstance("CIM_BootSourceSetting")
		in.set("BIOSBootString", "")
		in.set("BootString", "")
		in.set("ElementName", id)
		in.set("FailThroughSupported", "2")
		in.set("InstanceID", id)
		in.set("StructuredBootString", structured[id])
		out = append(out, in)
	}
	return out
}

// changeBootOrder is CIM_BootConfigSetting.ChangeBootOrder: without Source
// it clears the boot order; with one it forces that CIM_BootSourceSetting
// on the boot the configuration applies to.
func changeBootOrder(c *callCtx) ([]prop, int) {
	src := c.in.child("Source")
	if src == nil {
		c.p.bootSource = ""
		return nil, amtSuccess
	}
	e, _ := parseEPR(src)
	id := e.selectors["InstanceID"]
	if className(e.resource) != "CIM_BootSourceSetting" || !slices.Contains(c.p.bootSourceIDs(), id) {
		return nil, amtInvalidParameter
	}
	c.p.bootSource = id
	return nil, amtSuccess
}

func (h *wsman) bootService() *instance {
	in := newInstance("CIM_BootService")
	in.set("CreationClassName", "CIM_BootService")
	in.set("ElementName", "Intel(r) AMT Boot Service")
	in.setInt("EnabledState", h.plat.bootSvc)
	in.set("Name", "Intel(r) AMT Boot Service")
	in.set("OperationalStatus", "0")
	in.set("RequestedState", "12")
	in.set("SystemCreationClassName", "CIM_ComputerSystem")
	in.set("SystemName", "Intel(r) AMT")
	return in
}

// setBootConfigRole is CIM_BootService.SetBootConfigRole(BootConfigSetting,
// Role): Role 1 (IsNext) makes "Intel(r) AMT: Boot Configuration 0" the
// configuration of the next boot, Role 0 (IsDefault) undoes that.
func setBootConfigRole(c *callCtx) ([]prop, int) {
	e, ok := parseEPR(c.in.child("BootConfigSetting"))
	role, rok := c.methodInt("Role", 0, 65535)
	if !ok || !rok || className(e.resource) != "CIM_BootConfigSetting" || e.selectors["InstanceID"] != BootConfig {
		return nil, amtInvalidParameter
	}
	switch role {
	case 0:
		c.p.bootNext = false
	case 1:
		c.p.bootNext = true
	default:
		return nil, amtInvalidParameter
	}
	return nil, amtSuccess
}

// bootServiceStateChange enables One Click Recovery and Remote Platform
// Erase (AMT 16 and later): 32768 neither, 32769 RPE, 32770 OCR, 32771
// both.
func bootServiceStateChange(c *callCtx) ([]prop, int) {
	s, ok := c.methodInt("RequestedState", 0, 65535)
	if !ok || !c.p.version.atLeast(16) || s < 32768 || s > 32771 {
		return nil, amtInvalidParameter
	}
	c.p.bootSvc = int(s)
	return nil, amtSuccess
}

// --- redirection ---

func (h *wsman) redirectionService() *instance {
	in := newInstance("AMT_RedirectionService")
	in.set("CreationClassName", "AMT_RedirectionService")
	in.set("ElementName", "Intel(r) AMT Redirection Service")
	in.setInt("EnabledState", h.plat.redirState)
	in.setBool("ListenerEnabled", h.plat.listener)
	in.set("Name", "Intel(r) AMT Redirection Service")
	in.set("SystemCreationClassName", "CIM_ComputerSystem")
	in.set("SystemName", "Intel(r) AMT")
	return in
}

// putRedirectionService sets ListenerEnabled; when false, the device stops
// listening on 16994 (channels to it are refused).
func putRedirectionService(c *callCtx) *wsFault {
	if s, ok := c.in.textOf("ListenerEnabled"); ok {
		v, ok := parseBool(s)
		if !ok {
			return faultInvalidRepresentation("ListenerEnabled is not a boolean.")
		}
		c.p.listener = v
	}
	return nil
}

// redirectionStateChange is AMT_RedirectionService.RequestStateChange:
// 32768 none, 32769 IDE-R, 32770 SOL, 32771 both; changes are audited.
func redirectionStateChange(c *callCtx) ([]prop, int) {
	s, ok := c.methodInt("RequestedState", 0, 65535)
	if !ok || s < 32768 || s > 32771 {
		return nil, amtInvalidParameter
	}
	p := c.p
	old, now := p.redirState, p.now()
	ider := func(v int) bool { return v == 32769 || v == 32771 }
	sol := func(v int) bool { return v == 32770 || v == 32771 }
	if ider(old) != ider(int(s)) {
		p.audit.add(auditRecord(now, auditRedirection, map[bool]uint16{true: 2, false: 3}[ider(int(s))], c.user, c.addr, nil))
	}
	if sol(old) != sol(int(s)) {
		p.audit.add(auditRecord(now, auditRedirection, map[bool]uint16{true: 6, false: 7}[sol(int(s))], c.user, c.addr, nil))
	}
	p.redirState = int(s)
	return nil, amtSuccess
}

// kvmSAP is CIM_KVMRedirectionSAP: EnabledState 2 enabled, 3 disabled, 6
// enabled but offline (the redirection listener is off).
func (h *wsman) kvmSAP() *instance {
	p := h.plat
	state := 3
	if p.kvmEnabled {
		state = 2
		if !p.listener {
			state = 6
		}
	}
	in := newInstance("CIM_KVMRedirectionSAP")
	in.set("CreationClassName", "CIM_KVMRedirectionSAP")
	in.set("ElementName", "KVM Redirection Service Access Point")
	in.setInt("EnabledState", state)
	in.set("KVMProtocol", "4")
	in.set("Name", "KVM Redirection Service Access Point")
	in.set("RequestedState", "5")
	in.set("SystemCreationClassName", "CIM_ComputerSystem")
	in.set("SystemName", "ManagedSystem")
	return in
}

// kvmStateChange is CIM_KVMRedirectionSAP.RequestStateChange: 2 enables, 3
// disables KVM; changes are audited.
func kvmStateChange(c *callCtx) ([]prop, int) {
	s, ok := c.methodInt("RequestedState", 0, 65535)
	if !ok || (s != 2 && s != 3) {
		return nil, amtInvalidParameter
	}
	p := c.p
	if on := s == 2; on != p.kvmEnabled {
		p.kvmEnabled = on
		p.audit.add(auditRecord(p.now(), auditRedirection, map[bool]uint16{true: 10, false: 11}[on], c.user, c.addr, nil))
	}
	return nil, amtSuccess
}

func (h *wsman) kvmSettings() *instance {
	p := h.plat
	in := newInstance("IPS_KVMRedirectionSettingData")
	if p.version.atLeast(16) {
		in.setBool("BackToBackFbMode", false)
	}
	in.setInt("DefaultScreen", p.kvmDefaultScr)
	in.set("ElementName", "Intel(r) KVM Redirection Settings")
	in.setBool("EnabledByMEBx", true)
	in.set("InstanceID", "Intel(r) KVM Redirection Settings")
	in.setBool("Is5900PortEnabled", p.kvm5900)
	in.setBool("OptInPolicy", p.consentNeeded(featureKVM))
	in.setInt("OptInPolicyTimeout", p.kvmOptInTimeout)
	in.set("RFBPassword", "")
	in.setInt("SessionTimeout", p.kvmTimeout)
	return in
}

// putKVMSettings sets the KVM settings. OptInPolicy false makes KVM need
// no consent (OptInRequired 0), true makes it need consent if nothing did
// (1); CCM refuses false.
func putKVMSettings(c *callCtx) *wsFault {
	p := c.p
	port, def, to, opt := p.kvm5900, p.kvmDefaultScr, p.kvmTimeout, p.kvmOptInTimeout
	consent := p.consent
	for _, k := range c.in.kids {
		switch k.local {
		case "Is5900PortEnabled", "OptInPolicy":
			v, ok := parseBool(k.text)
			if !ok {
				return faultInvalidRepresentation(k.local + " is not a boolean.")
			}
			if k.local == "Is5900PortEnabled" {
				port = v
			} else if !v {
				consent = ConsentNone
			} else if consent == ConsentNone {
				consent = ConsentKVM
			}
		case "DefaultScreen", "SessionTimeout", "OptInPolicyTimeout":
			v, ok := parseInt(k.text, 0, 65535)
			if !ok {
				return faultInvalidRepresentation(k.local + " is not an integer from 0 to 65535.")
			}
			switch k.local {
			case "DefaultScreen":
				def = int(v)
			case "SessionTimeout":
				to = int(v)
			default:
				opt = int(v)
			}
		}
	}
	if err := p.setConsent(consent, c.user, c.addr); err != nil {
		return &wsFault{subcode: "c:AccessDenied", reason: "The sender was not authorized to access the resource: " + err.Error() + "."}
	}
	p.kvm5900, p.kvmDefaultScr, p.kvmTimeout, p.kvmOptInTimeout = port, def, to, opt
	return nil
}

// --- consent ---

func (h *wsman) optInService() *instance {
	p := h.plat
	p.tick()
	in := newInstance("IPS_OptInService")
	in.setInt("CanModifyOptInPolicy", map[bool]int{true: 0, false: 1}[p.mode == CCM])
	in.set("CreationClassName", "IPS_OptInService")
	in.set("ElementName", "Intel(r) AMT OptIn Service")
	in.set("Name", "Intel(r) AMT OptIn Service")
	in.setInt("OptInCodeTimeout", p.codeTimeout)
	in.setInt("OptInDisplayTimeout", p.displayTimeout)
	in.set("OptInRequired", strconv.FormatUint(uint64(p.consent), 10))
	in.setInt("OptInState", p.optInState)
	in.set("SystemCreationClassName", "CIM_ComputerSystem")
	in.set("SystemName", "Intel(r) AMT")
	return in
}

// putOptInService sets OptInRequired (0, 1 or 4294967295; only in ACM),
// OptInCodeTimeout and OptInDisplayTimeout (60 to 900 s).
func putOptInService(c *callCtx) *wsFault {
	p := c.p
	consent, code, disp := p.consent, p.codeTimeout, p.displayTimeout
	for _, k := range c.in.kids {
		switch k.local {
		case "OptInRequired":
			v, ok := parseInt(k.text, 0, 0xFFFFFFFF)
			if !ok || !UserConsent(v).valid() {
				return faultInvalidRepresentation("OptInRequired must be 0, 1 or 4294967295.")
			}
			consent = UserConsent(v)
		case "OptInCodeTimeout", "OptInDisplayTimeout":
			v, ok := parseInt(k.text, 60, 900)
			if !ok {
				return faultInvalidRepresentation(k.local + " must be from 60 to 900 seconds.")
			}
			if k.local == "OptInCodeTimeout" {
				code = int(v)
			} else {
				disp = int(v)
			}
		}
	}
	if err := p.setConsent(consent, c.user, c.addr); err != nil {
		return &wsFault{subcode: "c:AccessDenied", reason: "The sender was not authorized to access the resource: " + err.Error() + "."}
	}
	p.codeTimeout, p.displayTimeout = code, disp
	return nil
}

func startOptIn(c *callCtx) ([]prop, int) { return nil, c.p.startOptIn() }

func sendOptInCode(c *callCtx) ([]prop, int) {
	code, ok := c.methodInt("OptInCode", 0, 0xFFFFFFFF)
	if !ok {
		return nil, amtInvalidParameter
	}
	return nil, c.p.sendOptInCode(code, c.user, c.addr)
}

func cancelOptIn(c *callCtx) ([]prop, int) { return nil, c.p.cancelOptIn() }

// --- version and control mode ---

func (h *wsman) softwareIdentity() []*instance {
	v := h.plat.version
	ver := v.String()
	build := strconv.Itoa(3000 + v.build)
	var out []*instance
	for _, kv := range [][2]string{
		{"Flash", ver}, {"Netstack", ver}, {"AMTApps", ver}, {"AMT", ver}, {"Sku", "16392"}, {"VendorID", "8086"},
		{"Build Number", build}, {"Recovery Version", ver}, {"Recovery Build Num", build}, {"Legacy Mode", "False"},
		{"AMT FW Core Version", ver},
	} {
		in := newInstance("CIM_SoftwareIdentity")
		in.set("InstanceID", kv[0])
		in.setBool("IsEntity", true)
		in.set("VersionString", kv[1])
		out = append(out, in)
	}
	return out
}

func (h *wsman) setupService() *instance {
	e := h.plat.enrolment()
	in := newInstance("AMT_SetupAndConfigurationService")
	in.set("CreationClassName", "AMT_SetupAndConfigurationService")
	in.set("DhcpDNSSuffix", e.dnsSuffix)
	in.set("ElementName", "Intel(r) AMT Setup and Configuration Service")
	in.set("EnabledState", "5")
	in.set("Name", "Intel(r) AMT Setup and Configuration Service")
	in.set("PasswordModel", "1")
	in.setInt("ProvisioningMode", h.plat.mode.provisioningMode())
	in.set("ProvisioningServerOTP", "")
	in.setInt("ProvisioningState", map[bool]int{false: 2, true: 0}[e.preProvisioning])
	in.set("RequestedState", "12")
	in.set("SystemCreationClassName", "CIM_ComputerSystem")
	in.set("SystemName", "Intel(r) AMT")
	in.set("TrustedDNSSuffix", "")
	in.setBool("ZeroTouchConfigurationEnabled", true)
	return in
}

// --- hardware ---

// serialOf derives a part's serial number from the system's.
func (p *Platform) serialOf(part string, i int) string {
	return fmt.Sprintf("%s%s%02d", part, p.serial[:8], i)
}

func (h *wsman) chassis() *instance {
	p := h.plat
	in := newInstance("CIM_Chassis")
	in.setInt("ChassisPackageType", p.hw.ChassisType)
	in.set("CreationClassName", "CIM_Chassis")
	in.set("ElementName", "Managed System Chassis")
	in.set("Manufacturer", p.hw.Manufacturer)
	in.set("Model", p.hw.Model)
	in.set("OperationalStatus", "0")
	in.set("PackageType", "3")
	in.set("SerialNumber", p.serial)
	in.set("Tag", "CIM_Chassis")
	in.set("Version", p.hw.Version)
	return in
}

func (h *wsman) card() *instance {
	p := h.plat
	in := newInstance("CIM_Card")
	in.setBool("CanBeFRUed", true)
	in.set("CreationClassName", "CIM_Card")
	in.set("ElementName", "Managed System Base Board")
	in.setBool("HostingBoard", true)
	in.set("Manufacturer", p.hw.BoardManufacturer)
	in.set("Model", p.hw.BoardModel)
	in.set("OperationalStatus", "0")
	in.set("PackageType", "9")
	in.set("SerialNumber", p.serialOf("PB", 0))
	in.set("Tag", "CIM_Card")
	in.set("Version", p.hw.BoardVersion)
	return in
}

func (h *wsman) bios() *instance {
	p := h.plat
	in := newInstance("CIM_BIOSElement")
	in.set("ElementName", "Primary BIOS")
	in.set("Manufacturer", p.hw.BIOSVendor)
	in.set("Name", "Primary BIOS")
	in.set("OperationalStatus", "0")
	in.setBool("PrimaryBIOS", true)
	in.raw("ReleaseDate", datetimeXML(p.hw.BIOSDate))
	in.set("SoftwareElementID", p.hw.BIOSVersion)
	in.set("SoftwareElementState", "2")
	in.set("TargetOperatingSystem", "66")
	in.set("Version", p.hw.BIOSVersion)
	return in
}

func (h *wsman) memory() []*instance {
	p := h.plat
	var out []*instance
	for i, m := range p.hw.Memory {
		in := newInstance("CIM_PhysicalMemory")
		in.set("BankLabel", m.Bank)
		in.set("Capacity", strconv.FormatInt(int64(m.SizeMB)<<20, 10))
		in.setInt("ConfiguredMemoryClockSpeed", m.MHz)
		in.set("CreationClassName", "CIM_PhysicalMemory")
		in.set("ElementName", "Managed System Memory Chip")
		in.setInt("FormFactor", m.FormFactor)
		in.setBool("IsSpeedInMhz", true)
		in.set("Manufacturer", m.Manufacturer)
		in.setInt("MaxMemorySpeed", m.MHz)
		in.setInt("MemoryType", m.Type)
		in.set("OperationalStatus", "0")
		in.set("PartNumber", m.PartNumber)
		in.set("SerialNumber", p.serialOf("M", i))
		in.set("Speed", "0")
		in.set("Tag", fmt.Sprintf("98765432%02d", i))
		out = append(out, in)
	}
	return out
}

func (h *wsman) chip() *instance {
	in := newInstance("CIM_Chip")
	in.setBool("CanBeFRUed", true)
	in.set("CreationClassName", "CIM_Chip")
	in.set("ElementName", "Managed System Processor Chip")
	in.set("Manufacturer", "Intel(R) Corporation")
	in.set("OperationalStatus", "0")
	in.set("Tag", "CPU 0")
	in.set("Version", h.plat.hw.CPU)
	return in
}

func (h *wsman) processor() *instance {
	hw := h.plat.hw
	in := newInstance("CIM_Processor")
	in.set("CPUStatus", "1")
	in.set("CreationClassName", "CIM_Processor")
	in.setInt("CurrentClockSpeed", hw.CPUMHz)
	in.set("DeviceID", "CPU 0")
	in.set("ElementName", "Managed System CPU")
	in.set("EnabledState", "2")
	in.set("ExternalBusClockSpeed", "100")
	in.setInt("Family", hw.CPUFamily)
	in.set("HealthState", "0")
	in.setInt("MaxClockSpeed", hw.CPUMaxMHz)
	in.set("OperationalStatus", "0")
	in.set("RequestedState", "12")
	in.set("Role", "Central Processor")
	in.set("Stepping", "2")
	in.set("SystemCreationClassName", "CIM_ComputerSystem")
	in.set("SystemName", "ManagedSystem")
	in.set("UpgradeMethod", "1")
	return in
}

func (h *wsman) mediaDevices() []*instance {
	var out []*instance
	for i, d := range h.plat.hw.Disks {
		in := newInstance("CIM_MediaAccessDevice")
		in.set("Capabilities", "4")
		in.set("CreationClassName", "CIM_MediaAccessDevice")
		in.set("DeviceID", fmt.Sprintf("MEDIA DEV %d", i))
		in.set("ElementName", "Managed System Media Access Device")
		in.set("EnabledDefault", "2")
		in.set("EnabledState", "2")
		in.set("MaxMediaSize", strconv.FormatInt(int64(d.SizeGB)*1000*1000, 10)) // KB
		in.set("OperationalStatus", "0")
		in.set("RequestedState", "12")
		in.set("Security", "2")
		in.set("SystemCreationClassName", "CIM_ComputerSystem")
		in.set("SystemName", "ManagedSystem")
		out = append(out, in)
	}
	return out
}

// physicalPackages enumerates CIM_PhysicalPackage and its subclasses, as
// AMT does: the chassis, the baseboard, then one package per disk.
func (h *wsman) physicalPackages() []*instance {
	p := h.plat
	out := []*instance{h.chassis(), h.card()}
	for i, d := range p.hw.Disks {
		in := newInstance("CIM_PhysicalPackage")
		in.setBool("CanBeFRUed", true)
		in.set("CreationClassName", "CIM_PhysicalPackage")
		in.set("ElementName", "Managed System Media Package")
		in.set("Manufacturer", "")
		in.set("Model", d.Model)
		in.set("OperationalStatus", "0")
		in.set("PackageType", "0")
		in.set("SerialNumber", p.serialOf("D", i))
		in.set("Tag", fmt.Sprintf("MEDIA DEV %d", i))
		out = append(out, in)
	}
	return out
}

// --- logs ---

func (h *wsman) messageLog() *instance {
	l := h.plat.events
	in := newInstance("AMT_MessageLog")
	in.set("Capabilities", "5", "6", "8", "7")
	in.set("CharacterSet", "10")
	in.set("CreationClassName", "AMT_MessageLog")
	in.setInt("CurrentNumberOfRecords", len(l.recs))
	in.set("ElementName", "Intel(r) AMT:MessageLog 1")
	in.set("EnabledDefault", "2")
	in.set("EnabledState", "2")
	in.set("HealthState", "5")
	in.setBool("IsFrozen", false)
	in.set("LastChange", "0")
	in.set("LogState", "4")
	in.set("MaxLogSize", "0")
	in.setInt("MaxNumberOfRecords", l.max)
	in.setInt("MaxRecordSize", eventRecordLen)
	in.set("Name", "Intel(r) AMT:MessageLog 1")
	in.set("OperationalStatus", "2")
	in.set("OverwritePolicy", "2")
	in.set("PercentageNearFull", strconv.Itoa(len(l.recs)*100/l.max))
	in.set("RequestedState", "12")
	in.set("SizeOfHeader", "0")
	in.set("SizeOfRecordHeader", "0")
	in.set("Status", "OK")
	return in
}

// getRecords is AMT_MessageLog.GetRecords(IterationIdentifier,
// MaxReadRecords): the records from position IterationIdentifier (1 is
// the newest), at most MaxReadRecords (390 if absent or larger), as base64
// in RecordArray; the returned IterationIdentifier is where the next call
// starts, and NoMoreRecords says whether one is needed. An identifier
// beyond the log gets 2 (invalid record pointed).
func getRecords(c *callCtx) ([]prop, int) {
	recs := c.p.events.newestFirst()
	id, ok := c.methodInt("IterationIdentifier", 1, int64(len(recs))+1)
	if !ok {
		return nil, messageLogInvalidIter
	}
	max := int64(maxRecordsPerGet)
	if s, present := c.in.textOf("MaxReadRecords"); present {
		if max, ok = parseInt(s, 1, 1<<31); !ok {
			return nil, messageLogInvalidIter
		}
		max = min(max, maxRecordsPerGet)
	}
	from := int(id - 1)
	to := min(from+int(max), len(recs))
	var arr []string
	for _, r := range recs[from:to] {
		arr = append(arr, base64.StdEncoding.EncodeToString(r.Bytes()))
	}
	return []prop{
		{name: "IterationIdentifier", vals: []string{strconv.Itoa(to + 1)}},
		{name: "NoMoreRecords", vals: []string{strconv.FormatBool(to == len(recs))}},
		{name: "RecordArray", vals: arr},
	}, amtSuccess
}

// positionToFirstRecord is AMT_MessageLog.PositionToFirstRecord, which has
// no effect on AMT (GWM): it returns IterationIdentifier 1.
func positionToFirstRecord(*callCtx) ([]prop, int) {
	return []prop{{name: "IterationIdentifier", vals: []string{"1"}}}, amtSuccess
}

func (h *wsman) auditLogInstance() *instance {
	l := h.plat.audit
	in := newInstance("AMT_AuditLog")
	in.setInt("CurrentNumberOfRecords", len(l.recs))
	in.set("ElementName", "Intel(r) AMT:Audit Log")
	in.set("EnabledState", "2")
	in.set("MaxAllowedAuditors", "1")
	in.setInt("MaxNumberOfRecords", l.max)
	in.set("MinDaysToKeep", "0")
	in.set("Name", "Intel(r) AMT:Audit Log")
	in.set("OverwritePolicy", "2")
	in.setInt("PercentageFree", 100-len(l.recs)*100/l.max)
	in.set("RequestedState", "12")
	in.set("StoragePolicy", "1")
	last := time.Unix(0, 0)
	if n := len(l.recs); n > 0 {
		last = time.Unix(int64(l.recs[n-1].TimeStamp), 0)
	}
	in.raw("TimeOfLastRecord", datetimeXML(last))
	return in
}

// readRecords is AMT_AuditLog.ReadRecords(StartIndex): up to ten records
// from StartIndex (1 is the oldest) as base64 EventRecords, with
// TotalRecordCount and RecordsReturned. A StartIndex of 0 or beyond the
// log gets 35 (invalid index): AMT 15 refuses a StartIndex of 0
// (DMT/mps#301).
func readRecords(c *callCtx) ([]prop, int) {
	recs := c.p.audit.recs
	total := len(recs)
	start, ok := c.methodInt("StartIndex", 1, int64(max(total, 1)))
	if !ok {
		return nil, auditInvalidIndex
	}
	from := int(start - 1)
	to := min(from+maxAuditPerRead, total)
	var arr []string
	for _, r := range recs[min(from, total):to] {
		arr = append(arr, base64.StdEncoding.EncodeToString(r.Bytes()))
	}
	return []prop{
		{name: "TotalRecordCount", vals: []string{strconv.Itoa(total)}},
		{name: "RecordsReturned", vals: []string{strconv.Itoa(len(arr))}},
		{name: "EventRecords", vals: arr},
	}, amtSuccess
}
