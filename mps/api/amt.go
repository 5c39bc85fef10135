package api

// The AMT toolbox on the Intel toolkit MPS's paths and shapes
// (device-management-toolkit/mps src/routes/amt), so that the toolkit's
// sample web UI and scripts written for its MPS work against Presence
// unchanged. Every handler is a thin layer over mps/toolbox, the one
// implementation the window and `presence amt` use too.
//
// Where the MPS's shapes differ between its versions, these follow the
// newest sources (the ESM ones, whose ErrorResponse is {error,
// errorDescription}: amt-toolbox.md's MPS key); where a field is
// Presence's own, its comment says so.
// Values are JSON numbers and booleans, not the strings of the XML.
//
// Errors have the MPS's body, {"error": ..., "errorDescription": ...},
// plus "message" (the sample web UI's APIResponse reads error and
// message); errorDescription and message both hold the sentence of
// toolbox.Sentence. The statuses:
//
//   - 404: the device is unknown, or not connected (also when its tunnel
//     is gone before the call could reach it), as the MPS's CIRA
//     middleware answers. A name is never looked up in DNS.
//   - 400: a malformed body, an unknown action number, or an action the
//     device's state or version does not allow (toolbox.Check).
//   - 403: user consent is needed first (a boot option in client control
//     mode, or in admin control mode with consent for everything). The
//     MPS does not check: it sends the boot sequence and AMT answers
//     ReturnValue 0 but ignores the boot option (DMT/cloud-deployment#291).
//   - 502: the device rejected Presence's AMT credentials (never retried:
//     AMT locks accounts out), Presence has no AMT account for it, or it
//     refused or garbled a call. Not 401: the caller did log in to
//     Presence, and a 401 would make a browser ask for Presence's login.
//   - 501: the platform lacks the class or method (a fault
//     DestinationUnreachable, ActionNotSupported or InvalidResourceURI),
//     or the action is one of the toolkit's Presence does not do (IDE-R,
//     diagnostic, erase and OS power saving actions). Not 404, which
//     means an unknown device to the toolkit's clients.
//   - 504: the tunnel went away during the call, or the device did not
//     answer in time.
//   - 503 with Retry-After: too many calls are waiting for the device
//     (one call at a time per device), or Presence is shutting down.
//   - 403 also for a request that changes a device and that a browser
//     sent for a page of another site without the instance's token
//     (notCrossSite).
//
// The consent routes answer a refusal of the device as the MPS's
// statusMapper does: 409 for NOT_READY (2), 422 for UNSUPPORTED (0x0812, a
// wrong code), 400 for the others, with details and amtResponse. A power
// or boot action the device refuses with a ReturnValue is answered 200
// with that ReturnValue, as the MPS does, plus "message".

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps"
	"github.com/presence-mps/presence/mps/proxy"
	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/mps/wsman"
	"github.com/presence-mps/presence/vault"
)

// maxAMTBody caps the body of an AMT request: the largest, a features
// change, is about 100 bytes.
const maxAMTBody = 4 << 10

// amtWriteTimeout bounds an operation that changes the device (a power
// action, a boot sequence, consent, the switches). It does not end when
// the client goes away: a boot sequence left halfway would leave the next
// boot's options set.
const amtWriteTimeout = wsman.DefaultLongTimeout

// Resource URIs of the answers' headers.
const (
	uriPowerService    = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_PowerManagementService"
	uriOptInService    = "http://intel.com/wbem/wscim/1/ips-schema/1/IPS_OptInService"
	uriGeneralSettings = "http://intel.com/wbem/wscim/1/amt-schema/1/AMT_GeneralSettings"
	actionGetResponse  = "http://schemas.xmlsoap.org/ws/2004/09/transfer/GetResponse"
)

func (a *API) amtRoutes() {
	if a.cfg.AMT == nil {
		return
	}
	for _, r := range []struct {
		pattern string
		h       func(http.ResponseWriter, *http.Request, string)
		changes bool // the request changes the device
	}{
		{"GET /api/v1/amt/power/state/{guid}", a.amtPowerState, false},
		{"GET /api/v1/amt/power/capabilities/{guid}", a.amtPowerCapabilities, false},
		{"POST /api/v1/amt/power/action/{guid}", a.amtPowerAction, true},
		{"POST /api/v1/amt/power/bootOptions/{guid}", a.amtPowerAction, true},
		{"GET /api/v1/amt/version/{guid}", a.amtVersion, false},
		{"GET /api/v1/amt/hardwareInfo/{guid}", a.amtHardware, false},
		{"GET /api/v1/amt/generalSettings/{guid}", a.amtGeneralSettings, false},
		{"GET /api/v1/amt/log/event/{guid}", a.amtEventLog, false},
		{"GET /api/v1/amt/log/audit/{guid}", a.amtAuditLog, false},
		// The MPS starts a consent request with a GET.
		{"GET /api/v1/amt/userConsentCode/{guid}", a.amtConsentStart, true},
		{"POST /api/v1/amt/userConsentCode/{guid}", a.amtConsentSend, true},
		{"DELETE /api/v1/amt/userConsentCode/{guid}", a.amtConsentCancel, true},
		// The MPS cancels with a GET of its own path.
		{"GET /api/v1/amt/userConsentCode/cancel/{guid}", a.amtConsentCancel, true},
		{"GET /api/v1/amt/features/{guid}", a.amtFeatures, false},
		{"POST /api/v1/amt/features/{guid}", a.amtSetFeatures, true},
	} {
		h := a.amtDeviceHandler(r.h)
		if r.changes {
			h = a.notCrossSite(h)
		}
		a.mux.HandleFunc(r.pattern, a.auth(h))
	}
}

// notCrossSite refuses a request that changes a device when a browser
// sent it for a page of another site, unless it carries the instance's
// token: a browser adds a login it remembers (and loopback may need
// none) to an image or a form of any page, and the MPS's GETs that start
// and cancel consent, and a form's text/plain body that reads as JSON,
// would otherwise let any page the admin opens act on devices.
func (a *API) notCrossSite(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if crossSite(r) && !a.hasToken(r) {
			a.log.Info("api: cross-site AMT request refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
			writeAMTError(w, http.StatusForbidden, "A page of another site may not act on a device; send the instance's token (Authorization: Bearer).")
			return
		}
		h(w, r)
	}
}

// crossSite reports whether a browser sent r for a page of another site:
// by Sec-Fetch-Site where the browser sends it, else by Origin. Programs
// (curl, the command line, scripts) send neither.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "cross-site", "same-site":
		return true
	case "same-origin", "none":
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// hasToken reports whether r carries the instance's token.
func (a *API) hasToken(r *http.Request) bool {
	t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && a.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(t)), []byte(a.cfg.Token)) == 1
}

// amtDeviceHandler resolves the {guid} of the path (a GUID in any form, a
// host name or an alias, of a device here or on a peer) to the device's
// GUID before h runs; an unknown name is a 404.
func (a *API) amtDeviceHandler(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("guid")
		guid, ok := a.amtDevice(name)
		if !ok {
			writeAMTError(w, http.StatusNotFound, fmt.Sprintf("No connected device is named %s.", quoteName(name)))
			return
		}
		h(w, r, guid)
	}
}

// amtDevice finds the device named name: one of this instance's, else one
// a peer of its fleet holds (by alias, GUID or host name).
func (a *API) amtDevice(name string) (string, bool) {
	if name == "" {
		return "", false
	}
	if d, ok := a.cfg.Server.Device(name); ok {
		return d.UUID, true
	}
	g, ok := a.peerDevice(name)
	return g, ok && g != ""
}

// quoteName quotes a name from a request for a message, cut short.
func quoteName(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}

// AMTError is the body of an AMT endpoint's error (the MPS's
// ErrorResponse, and the sample web UI's APIResponse).
type AMTError struct {
	// Error is the kind of error, in the MPS's words ("Device not
	// found/connected. Please connect again using CIRA.", "Incorrect URI or
	// Bad Request", ...) or the HTTP status text.
	Error string `json:"error"`
	// Message and ErrorDescription are the sentence that says what went
	// wrong.
	Message          string `json:"message"`
	ErrorDescription string `json:"errorDescription"`
	// Details and AMTResponse are set by the consent routes, as the
	// MPS's statusMapper sets them.
	Details     *AMTErrorDetails `json:"details,omitempty"`
	AMTResponse *AMTMethodResult `json:"amtResponse,omitempty"`
}

// AMTErrorDetails is the device's ReturnValue and its name.
type AMTErrorDetails struct {
	ReturnValue    uint32 `json:"returnValue"`
	ReturnValueStr string `json:"returnValueStr"`
	Suggestion     string `json:"suggestion,omitempty"`
}

// errorKind is the "error" of a status: the MPS's HTTPErrorTable where it
// has an entry, else the status text.
func errorKind(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "Incorrect URI or Bad Request"
	case http.StatusNotFound:
		return "Device not found/connected. Please connect again using CIRA."
	}
	return http.StatusText(code)
}

func writeAMTError(w http.ResponseWriter, code int, sentence string) {
	writeAMTErrorBody(w, code, AMTError{Error: errorKind(code), Message: sentence, ErrorDescription: sentence})
}

func writeAMTErrorBody(w http.ResponseWriter, code int, e AMTError) {
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSONStatus(w, code, e)
}

// errNoAMTAccountSentence is the sentence for a device no AMT account
// applies to.
const errNoAMTAccountSentence = "Presence has no AMT account for this device: add one with presence account add --kind amt NAME (password on standard input)."

// amtStatus maps an error of the toolbox to the HTTP status and the
// sentence of the answer (see the top of this file).
func amtStatus(err error) (int, string) {
	var te *wsman.TunnelError
	switch {
	case errors.Is(err, toolbox.ErrNotOffered):
		return http.StatusBadRequest, toolbox.Sentence(err)
	case errors.Is(err, toolbox.ErrBadCode):
		return http.StatusBadRequest, "The consent code is the six digits the device shows."
	case errors.Is(err, wsman.ErrConsentRequired):
		return http.StatusForbidden, toolbox.Sentence(err)
	case errors.Is(err, wsman.ErrCredentials):
		return http.StatusBadGateway, toolbox.Sentence(err)
	case errors.Is(err, vault.ErrNoAMTAccount):
		return http.StatusBadGateway, errNoAMTAccountSentence
	case errors.As(err, &te) && te.Op == "dial" && (errors.Is(err, proxy.ErrUnknownHost) || errors.Is(err, mps.ErrUnknownDevice)):
		// The device left between the name's lookup and the call.
		return http.StatusNotFound, toolbox.Sentence(err)
	case errors.Is(err, wsman.ErrTunnel):
		return http.StatusGatewayTimeout, toolbox.Sentence(err)
	case errors.Is(err, wsman.ErrUnsupported):
		return http.StatusNotImplemented, toolbox.Sentence(err)
	case errors.Is(err, wsman.ErrQueueFull), errors.Is(err, wsman.ErrClosed):
		return http.StatusServiceUnavailable, toolbox.Sentence(err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, toolbox.Sentence(err)
	}
	return http.StatusBadGateway, toolbox.Sentence(err)
}

// amtFail answers a failed operation and logs it (at Debug: the refusal
// of an action is logged by the action's handler).
func (a *API) amtFail(w http.ResponseWriter, r *http.Request, guid, op string, err error) {
	code, sentence := amtStatus(err)
	a.log.Debug("api: AMT call failed", "device", guid, "op", op, "status", code, "err", err)
	writeAMTError(w, code, sentence)
}

// who names the caller of a request for the log.
func who(r *http.Request) string { return cmp.Or(userOf(r), "(token or loopback)") }

// writeCtx is the context of an operation that changes the device: not
// ended by the client going away (see amtWriteTimeout), but by the API's
// Shutdown.
func (a *API) writeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), amtWriteTimeout)
	stop := context.AfterFunc(a.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// decodeAMTBody decodes a small JSON body into v. Unknown fields are
// ignored, as the MPS's validators ignore them.
func decodeAMTBody(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAMTBody))
	if err != nil {
		return fmt.Errorf("the body is larger than %d bytes", maxAMTBody)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("the body is empty")
	}
	return json.Unmarshal(b, v)
}

// AMTPowerState is GET /api/v1/amt/power/state/{guid}.
type AMTPowerState struct {
	// PowerState is CIM_AssociatedPowerManagementService.PowerState: 2
	// on, 3/4 sleep, 6/8/13 off, 7 hibernate, 9 power cycle.
	PowerState int `json:"powerstate"`
	// OSPowerSavingState is IPS_PowerManagementService's (AMT 10 and
	// later; absent on older platforms): 0 unknown, 1 unsupported, 2 full
	// power, 3 OS power saving.
	OSPowerSavingState *int `json:"OSPowerSavingState,omitempty"`
}

func (a *API) amtPowerState(w http.ResponseWriter, r *http.Request, guid string) {
	var out AMTPowerState
	// One turn on the device's queue: the power state, then the OS's.
	err := a.cfg.AMT.Client().Do(r.Context(), guid, func(ctx context.Context, s *wsman.Session) error {
		ps, err := s.PowerState(ctx)
		if err != nil {
			return err
		}
		out.PowerState = ps.State
		osState, err := s.OSPowerSavingState(ctx)
		var (
			fault *wsman.Fault
			se    *wsman.StatusError
		)
		switch {
		case err == nil:
			out.OSPowerSavingState = &osState
		case errors.Is(err, wsman.ErrUnsupported), errors.As(err, &fault), errors.As(err, &se):
			// The MPS answers without it too.
		default:
			return err
		}
		return nil
	})
	if err != nil {
		a.amtFail(w, r, guid, "power state", err)
		return
	}
	writeJSON(w, out)
}

// mpsActionLabels are the MPS's names of the power actions, the keys of
// GET /api/v1/amt/power/capabilities.
var mpsActionLabels = map[toolbox.Action]string{
	toolbox.On: "Power up", toolbox.Cycle: "Power cycle", toolbox.Off: "Power down", toolbox.Reset: "Reset",
	toolbox.SoftOff: "Soft-off", toolbox.SoftReset: "Soft-reset", toolbox.Sleep: "Sleep", toolbox.Hibernate: "Hibernate",
	toolbox.BIOSOn: "Power up to BIOS", toolbox.BIOSReset: "Reset to BIOS",
	toolbox.PXEReset: "Reset to PXE", toolbox.PXEOn: "Power on to PXE",
}

// AMTCapability is one entry of GET /api/v1/amt/power/capabilities: the
// answer is a JSON object of label → action number, in the order a
// console offers them.
type AMTCapability struct {
	Label  string
	Action int
}

// AMTCapabilities is that object; it keeps its order in JSON.
type AMTCapabilities []AMTCapability

// MarshalJSON writes the object in order.
func (c AMTCapabilities) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range c {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(e.Label)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Action))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads the object in order.
func (c *AMTCapabilities) UnmarshalJSON(b []byte) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return errors.New("api: capabilities are not a JSON object")
	}
	*c = nil
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		var n int
		if err := d.Decode(&n); err != nil {
			return err
		}
		*c = append(*c, AMTCapability{k, n})
	}
	return nil
}

// amtPowerCapabilities answers the actions that fit the device's state
// and version now (the toolbox's rule, MeshCommander's): unlike the MPS,
// which lists every action the version and the boot capabilities allow
// whatever the state, power up is not offered to a device that is on.
func (a *API) amtPowerCapabilities(w http.ResponseWriter, r *http.Request, guid string) {
	st, err := a.cfg.AMT.Status(r.Context(), guid)
	if err != nil {
		a.amtFail(w, r, guid, "power capabilities", err)
		return
	}
	out := AMTCapabilities{}
	for _, act := range toolbox.Offers(st) {
		out = append(out, AMTCapability{cmp.Or(mpsActionLabels[act], act.String()), int(act)})
	}
	writeJSON(w, out)
}

// AMTPowerRequest is the body of POST /api/v1/amt/power/action/{guid} and
// /power/bootOptions/{guid}.
type AMTPowerRequest struct {
	Action *int `json:"action"`
	// UseSOL asks the MPS to start the boot with SOL redirected; Presence
	// does not set it (a SOL session through the relay sees the boot).
	UseSOL bool `json:"useSOL,omitempty"`
}

// AMTMethodResult is the MPS's answer of a method: a header naming it and
// the body with its ReturnValue.
type AMTMethodResult struct {
	Header *AMTHeader     `json:"Header,omitempty"`
	Body   AMTReturnValue `json:"Body"`
	// OptInState is Presence's: where consent stands after a consent
	// request (0 not started, 1 requested, 2 displayed, 3 received, 4 in
	// session).
	OptInState *int `json:"optInState,omitempty"`
	// Message is Presence's: the sentence, when ReturnValue is not 0.
	Message string `json:"message,omitempty"`
}

// AMTHeader is the part of a WS-Man header the MPS passes on.
type AMTHeader struct {
	To          string `json:"To,omitempty"`
	Action      string `json:"Action"`
	ResourceURI string `json:"ResourceURI"`
}

// AMTReturnValue is a method's ReturnValue and its AMT name.
type AMTReturnValue struct {
	ReturnValue    uint32 `json:"ReturnValue"`
	ReturnValueStr string `json:"ReturnValueStr"`
}

func returnValue(v uint32) AMTReturnValue {
	return AMTReturnValue{v, cmp.Or(wsman.StatusName(v), "UNKNOWN_ERROR")}
}

func methodHeader(resource, method string) *AMTHeader {
	return &AMTHeader{To: "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous",
		Action: resource + "/" + method + "Response", ResourceURI: resource}
}

// unimplementedActions are the toolkit's action numbers Presence does not
// do: DMTF states no console sends, secure erase and the OCR boots
// (104-106), IDE-R (200-203), diagnostic (300/301) and OS power saving
// (500/501).
var unimplementedActions = []int{3, 6, 9, 11, 13, 15, 16, 17, 104, 105, 106, 200, 201, 202, 203, 300, 301, 500, 501}

// amtPowerAction is POST /power/action and /power/bootOptions: both take
// every action, plain (2, 5, 8, 10, 4, 7, 12, 14) and boot (100/101 BIOS,
// 400/401 PXE), and check it against the device's state first.
func (a *API) amtPowerAction(w http.ResponseWriter, r *http.Request, guid string) {
	var req AMTPowerRequest
	if err := decodeAMTBody(w, r, &req); err != nil || req.Action == nil {
		writeAMTError(w, http.StatusBadRequest, `The body must be JSON like {"action": 10}.`)
		return
	}
	n := *req.Action
	act := toolbox.Action(n)
	switch {
	case slices.Contains(unimplementedActions, n):
		writeAMTError(w, http.StatusNotImplemented, fmt.Sprintf("Presence does not do power action %d; it does 2, 5, 8, 10, 4, 7, 12, 14, 100/101 (BIOS) and 400/401 (PXE).", n))
		return
	case !act.Valid():
		writeAMTError(w, http.StatusBadRequest, fmt.Sprintf("%d is not a power action: use 2 on, 5 cycle, 8 off, 10 reset, 4, 7, 12, 14, 100/101 (BIOS) or 400/401 (PXE).", n))
		return
	case req.UseSOL:
		writeAMTError(w, http.StatusNotImplemented, "Presence does not start a boot with SOL redirected (useSOL); open a SOL session through the relay to watch it.")
		return
	}
	ctx, cancel := a.writeCtx(r)
	defer cancel()
	_, err := a.cfg.AMT.Power(ctx, guid, act)
	var se *wsman.StatusError
	switch {
	case err == nil:
		a.log.Info("api: AMT power action", "device", guid, "action", act.String(), "code", n, "user", who(r), "remote", r.RemoteAddr)
		writeJSON(w, AMTMethodResult{Header: methodHeader(uriPowerService, "RequestPowerStateChange"), Body: returnValue(0)})
	case errors.As(err, &se) && !errors.Is(err, wsman.ErrConsentRequired):
		// The device refused with a ReturnValue: the MPS answers it with
		// 200.
		a.log.Info("api: AMT power action refused by the device", "device", guid, "action", act.String(), "code", n,
			"user", who(r), "remote", r.RemoteAddr, "err", err)
		writeJSON(w, AMTMethodResult{Header: methodHeader(uriPowerService, "RequestPowerStateChange"),
			Body: returnValue(se.Value), Message: toolbox.Sentence(err)})
	default:
		code, sentence := amtStatus(err)
		a.log.Info("api: AMT power action refused", "device", guid, "action", act.String(), "code", n,
			"user", who(r), "remote", r.RemoteAddr, "status", code, "why", sentence)
		writeAMTError(w, code, sentence)
	}
}

// AMTVersion is GET /api/v1/amt/version/{guid}.
type AMTVersion struct {
	SoftwareIdentity AMTSoftwareIdentities `json:"CIM_SoftwareIdentity"`
	SetupAndConfig   AMTSetupAndConfig     `json:"AMT_SetupAndConfigurationService"`
}

// AMTSoftwareIdentities is the CIM_SoftwareIdentity instances.
type AMTSoftwareIdentities struct {
	Responses []AMTSoftwareIdentity `json:"responses"`
	Status    int                   `json:"status"`
}

// AMTSoftwareIdentity is one firmware part ("AMT", "Flash", "Sku", ...).
type AMTSoftwareIdentity struct {
	InstanceID    string `json:"InstanceID"`
	IsEntity      bool   `json:"IsEntity"`
	VersionString string `json:"VersionString"`
}

// AMTSetupAndConfig is AMT_SetupAndConfigurationService. The MPS also
// passes the whole envelope in "responses"; Presence does not.
type AMTSetupAndConfig struct {
	Response AMTSetupAndConfigResponse `json:"response"`
	Status   int                       `json:"status"`
}

// AMTSetupAndConfigResponse holds the provisioning: ProvisioningMode 1
// admin control mode, 4 client control mode; ProvisioningState 0 pre, 1
// in, 2 post.
type AMTSetupAndConfigResponse struct {
	ProvisioningMode  int `json:"ProvisioningMode"`
	ProvisioningState int `json:"ProvisioningState"`
	EnabledState      int `json:"EnabledState"`
}

func (a *API) amtVersion(w http.ResponseWriter, r *http.Request, guid string) {
	out := AMTVersion{SoftwareIdentity: AMTSoftwareIdentities{Responses: []AMTSoftwareIdentity{}, Status: 200}}
	ctx, cancel := context.WithTimeout(r.Context(), wsman.DefaultLongTimeout)
	defer cancel()
	err := a.cfg.AMT.Client().Do(ctx, guid, func(ctx context.Context, s *wsman.Session) error {
		ids, err := s.SoftwareIdentity(ctx)
		if err != nil {
			return err
		}
		for _, id := range ids {
			out.SoftwareIdentity.Responses = append(out.SoftwareIdentity.Responses,
				AMTSoftwareIdentity{InstanceID: id.InstanceID, IsEntity: id.IsEntity, VersionString: id.VersionString})
		}
		sc, err := s.SetupAndConfiguration(ctx)
		if err != nil {
			return err
		}
		out.SetupAndConfig = AMTSetupAndConfig{Status: 200, Response: AMTSetupAndConfigResponse{
			ProvisioningMode: sc.ProvisioningMode, ProvisioningState: sc.ProvisioningState, EnabledState: sc.EnabledState}}
		return nil
	})
	if err != nil {
		a.amtFail(w, r, guid, "version", err)
		return
	}
	writeJSON(w, out)
}

// AMTGeneralSettings is GET /api/v1/amt/generalSettings/{guid}: the
// header and AMT_GeneralSettings.
type AMTGeneralSettings struct {
	Header AMTHeader              `json:"Header"`
	Body   AMTGeneralSettingsBody `json:"Body"`
}

// AMTGeneralSettingsBody is AMT_GeneralSettings, by its property names.
type AMTGeneralSettingsBody struct {
	AMTNetworkEnabled             int    `json:"AMTNetworkEnabled"`
	DDNSPeriodicUpdateInterval    int    `json:"DDNSPeriodicUpdateInterval"`
	DDNSTTL                       int    `json:"DDNSTTL"`
	DDNSUpdateByDHCPServerEnabled bool   `json:"DDNSUpdateByDHCPServerEnabled"`
	DDNSUpdateEnabled             bool   `json:"DDNSUpdateEnabled"`
	DigestRealm                   string `json:"DigestRealm"`
	DomainName                    string `json:"DomainName"`
	HostName                      string `json:"HostName"`
	HostOSFQDN                    string `json:"HostOSFQDN"`
	IdleWakeTimeout               int    `json:"IdleWakeTimeout"`
	InstanceID                    string `json:"InstanceID"`
	NetworkInterfaceEnabled       bool   `json:"NetworkInterfaceEnabled"`
	PingResponseEnabled           bool   `json:"PingResponseEnabled"`
	PowerSource                   int    `json:"PowerSource"`
	PreferredAddressFamily        int    `json:"PreferredAddressFamily"`
	PresenceNotificationInterval  int    `json:"PresenceNotificationInterval"`
	PrivacyLevel                  int    `json:"PrivacyLevel"`
	RmcpPingResponseEnabled       bool   `json:"RmcpPingResponseEnabled"`
	SharedFQDN                    bool   `json:"SharedFQDN"`
	WsmanOnlyMode                 bool   `json:"WsmanOnlyMode"`
}

func (a *API) amtGeneralSettings(w http.ResponseWriter, r *http.Request, guid string) {
	g, err := a.cfg.AMT.Client().GeneralSettings(r.Context(), guid)
	if err != nil {
		a.amtFail(w, r, guid, "general settings", err)
		return
	}
	writeJSON(w, AMTGeneralSettings{
		Header: AMTHeader{To: "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous", Action: actionGetResponse, ResourceURI: uriGeneralSettings},
		Body: AMTGeneralSettingsBody{
			AMTNetworkEnabled: g.AMTNetworkEnabled, DDNSPeriodicUpdateInterval: g.DDNSPeriodicUpdateInterval, DDNSTTL: g.DDNSTTL,
			DDNSUpdateByDHCPServerEnabled: g.DDNSUpdateByDHCPServer, DDNSUpdateEnabled: g.DDNSUpdateEnabled,
			DigestRealm: g.DigestRealm, DomainName: g.DomainName, HostName: g.HostName, HostOSFQDN: g.HostOSFQDN,
			IdleWakeTimeout: g.IdleWakeTimeout, InstanceID: g.InstanceID, NetworkInterfaceEnabled: g.NetworkInterfaceEnabled,
			PingResponseEnabled: g.PingResponseEnabled, PowerSource: g.PowerSource, PreferredAddressFamily: g.PreferredAddressFamily,
			PresenceNotificationInterval: g.PresenceNotificationInterval, PrivacyLevel: g.PrivacyLevel,
			RmcpPingResponseEnabled: g.RmcpPingResponseEnabled, SharedFQDN: g.SharedFQDN, WsmanOnlyMode: g.WsmanOnlyMode,
		},
	})
}

// AMTHardware is GET /api/v1/amt/hardwareInfo/{guid}: per class, the
// instance a Get returned ("response", for the classes read by Get) and
// every instance ("responses"), with "status" 200, or 400 with nothing
// for a class the platform lacks (as the MPS's formatResponse). The MPS
// also answers CIM_ComputerSystemPackage and CIM_SystemPackaging, which
// Presence does not read; its "responses" of a Get class hold the whole
// envelope, Presence's the instance.
type AMTHardware struct {
	Chassis          AMTHardwareClass[AMTPhysicalPackage] `json:"CIM_Chassis"`
	Card             AMTHardwareClass[AMTPhysicalPackage] `json:"CIM_Card"`
	BIOSElement      AMTHardwareClass[AMTBIOSElement]     `json:"CIM_BIOSElement"`
	Processor        AMTHardwareClass[AMTProcessor]       `json:"CIM_Processor"`
	Chip             AMTHardwareClass[AMTChip]            `json:"CIM_Chip"`
	PhysicalMemory   AMTHardwareClass[AMTPhysicalMemory]  `json:"CIM_PhysicalMemory"`
	MediaAccess      AMTHardwareClass[AMTMediaAccess]     `json:"CIM_MediaAccessDevice"`
	PhysicalPackages AMTHardwareClass[AMTPhysicalPackage] `json:"CIM_PhysicalPackage"`
}

// AMTHardwareClass is the instances of one class.
type AMTHardwareClass[T any] struct {
	Response  *T  `json:"response,omitempty"`
	Responses []T `json:"responses"`
	Status    int `json:"status"`
}

// AMTPhysicalPackage is a CIM_Chassis, CIM_Card or CIM_PhysicalPackage.
type AMTPhysicalPackage struct {
	ElementName  string `json:"ElementName"`
	Manufacturer string `json:"Manufacturer"`
	Model        string `json:"Model"`
	PackageType  int    `json:"PackageType"`
	SerialNumber string `json:"SerialNumber"`
	Tag          string `json:"Tag"`
	Version      string `json:"Version"`
}

// AMTBIOSElement is CIM_BIOSElement; ReleaseDate is {"Datetime": ...} as
// in the MPS.
type AMTBIOSElement struct {
	ElementName  string         `json:"ElementName"`
	Manufacturer string         `json:"Manufacturer"`
	Name         string         `json:"Name"`
	PrimaryBIOS  bool           `json:"PrimaryBIOS"`
	ReleaseDate  map[string]any `json:"ReleaseDate"`
	Version      string         `json:"Version"`
}

// AMTProcessor is one CIM_Processor (clocks in MHz).
type AMTProcessor struct {
	CurrentClockSpeed int    `json:"CurrentClockSpeed"`
	DeviceID          string `json:"DeviceID"`
	ElementName       string `json:"ElementName"`
	Family            int    `json:"Family"`
	MaxClockSpeed     int    `json:"MaxClockSpeed"`
	Stepping          string `json:"Stepping"`
}

// AMTChip is one CIM_Chip (Version is the processor's model name).
type AMTChip struct {
	ElementName  string `json:"ElementName"`
	Manufacturer string `json:"Manufacturer"`
	Version      string `json:"Version"`
}

// AMTPhysicalMemory is one CIM_PhysicalMemory (Capacity in bytes).
type AMTPhysicalMemory struct {
	BankLabel    string `json:"BankLabel"`
	Capacity     int64  `json:"Capacity"`
	ElementName  string `json:"ElementName"`
	FormFactor   int    `json:"FormFactor"`
	Manufacturer string `json:"Manufacturer"`
	MemoryType   int    `json:"MemoryType"`
	PartNumber   string `json:"PartNumber"`
	SerialNumber string `json:"SerialNumber"`
	Speed        int    `json:"Speed"`
}

// AMTMediaAccess is one CIM_MediaAccessDevice (MaxMediaSize in KB).
type AMTMediaAccess struct {
	DeviceID     string `json:"DeviceID"`
	ElementName  string `json:"ElementName"`
	MaxMediaSize int64  `json:"MaxMediaSize"`
}

func pkg(p wsman.PhysicalPackage) AMTPhysicalPackage {
	return AMTPhysicalPackage{ElementName: p.ElementName, Manufacturer: p.Manufacturer, Model: p.Model,
		PackageType: p.PackageType, SerialNumber: p.SerialNumber, Tag: p.Tag, Version: p.Version}
}

// hwClass builds a class's entry; one says whether it is read by Get.
func hwClass[T any](missing []string, class string, one bool, items []T) AMTHardwareClass[T] {
	if slices.Contains(missing, class) {
		return AMTHardwareClass[T]{Responses: []T{}, Status: http.StatusBadRequest}
	}
	c := AMTHardwareClass[T]{Responses: append([]T{}, items...), Status: http.StatusOK}
	if one && len(items) > 0 {
		c.Response = &items[0]
	}
	return c
}

func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

func (a *API) amtHardware(w http.ResponseWriter, r *http.Request, guid string) {
	h, err := a.cfg.AMT.Client().Hardware(r.Context(), guid)
	if err != nil {
		a.amtFail(w, r, guid, "hardware", err)
		return
	}
	m := h.Missing
	bios := AMTBIOSElement{ElementName: cmp.Or(h.BIOS.Name, "Primary BIOS"), Manufacturer: h.BIOS.Manufacturer, Name: h.BIOS.Name,
		PrimaryBIOS: h.BIOS.PrimaryBIOS, ReleaseDate: map[string]any{"Datetime": h.BIOS.ReleaseDate}, Version: h.BIOS.Version}
	writeJSON(w, AMTHardware{
		Chassis:     hwClass(m, "CIM_Chassis", true, []AMTPhysicalPackage{pkg(h.Chassis)}),
		Card:        hwClass(m, "CIM_Card", true, []AMTPhysicalPackage{pkg(h.Board)}),
		BIOSElement: hwClass(m, "CIM_BIOSElement", true, []AMTBIOSElement{bios}),
		Processor: hwClass(m, "CIM_Processor", false, mapSlice(h.Processors, func(p wsman.Processor) AMTProcessor {
			return AMTProcessor{CurrentClockSpeed: p.CurrentClockSpeed, DeviceID: p.DeviceID, ElementName: p.ElementName,
				Family: p.Family, MaxClockSpeed: p.MaxClockSpeed, Stepping: p.Stepping}
		})),
		Chip: hwClass(m, "CIM_Chip", false, mapSlice(h.Chips, func(c wsman.Chip) AMTChip {
			return AMTChip{ElementName: c.ElementName, Manufacturer: c.Manufacturer, Version: c.Version}
		})),
		PhysicalMemory: hwClass(m, "CIM_PhysicalMemory", false, mapSlice(h.Memory, func(p wsman.PhysicalMemory) AMTPhysicalMemory {
			return AMTPhysicalMemory{BankLabel: p.BankLabel, Capacity: p.Capacity, ElementName: p.ElementName, FormFactor: p.FormFactor,
				Manufacturer: p.Manufacturer, MemoryType: p.MemoryType, PartNumber: p.PartNumber, SerialNumber: p.SerialNumber, Speed: p.Speed}
		})),
		MediaAccess: hwClass(m, "CIM_MediaAccessDevice", false, mapSlice(h.Disks, func(d wsman.MediaAccessDevice) AMTMediaAccess {
			return AMTMediaAccess{DeviceID: d.DeviceID, ElementName: d.ElementName, MaxMediaSize: d.MaxMediaSize}
		})),
		PhysicalPackages: hwClass(m, "CIM_PhysicalPackage", false, mapSlice(h.Packages, pkg)),
	})
}

// AMTEvent is one record of GET /api/v1/amt/log/event/{guid} (an array,
// in the device's order: newest first), with the MPS's field names.
type AMTEvent struct {
	DeviceAddress   uint8  `json:"DeviceAddress"`
	EventSensorType uint8  `json:"EventSensorType"`
	EventType       uint8  `json:"EventType"`
	EventOffset     uint8  `json:"EventOffset"`
	EventSourceType uint8  `json:"EventSourceType"`
	EventSeverity   uint8  `json:"EventSeverity"`
	SensorNumber    uint8  `json:"SensorNumber"`
	Entity          uint8  `json:"Entity"`
	EntityInstance  uint8  `json:"EntityInstance"`
	EventData       []int  `json:"EventData"`
	EntityStr       string `json:"EntityStr"`
	Desc            string `json:"Desc"`
	// TimeStamp is the MPS's name for the time; Time the sample web UI's
	// (both UTC).
	TimeStamp time.Time `json:"TimeStamp"`
	Time      time.Time `json:"Time"`
	// SeverityStr is Presence's: the severity's name.
	SeverityStr string `json:"EventSeverityStr"`
}

func (a *API) amtEventLog(w http.ResponseWriter, r *http.Request, guid string) {
	evs, err := a.cfg.AMT.Client().EventLog(r.Context(), guid)
	if err != nil {
		a.amtFail(w, r, guid, "event log", err)
		return
	}
	out := make([]AMTEvent, 0, len(evs))
	for _, e := range evs {
		data := make([]int, len(e.Data))
		for i, b := range e.Data {
			data[i] = int(b)
		}
		out = append(out, AMTEvent{
			DeviceAddress: e.DeviceAddress, EventSensorType: e.SensorType, EventType: e.EventType, EventOffset: e.Offset,
			EventSourceType: e.SourceType, EventSeverity: e.Severity, SensorNumber: e.SensorNumber, Entity: e.Entity,
			EntityInstance: e.EntityInstance, EventData: data, EntityStr: e.EntityName(), Desc: e.Description,
			TimeStamp: e.Time, Time: e.Time, SeverityStr: e.SeverityName(),
		})
	}
	writeJSON(w, out)
}

// AMTAuditLog is GET /api/v1/amt/log/audit/{guid}: a page of the audit
// log, newest first, and the count of all its records.
type AMTAuditLog struct {
	TotalCount int              `json:"totalCnt"`
	Records    []AMTAuditRecord `json:"records"`
}

// AMTAuditRecord is one audit record, with the MPS's field names.
type AMTAuditRecord struct {
	AuditAppID     uint16    `json:"AuditAppID"`
	EventID        uint16    `json:"EventID"`
	InitiatorType  uint8     `json:"InitiatorType"`
	AuditApp       string    `json:"AuditApp"`
	Event          string    `json:"Event"`
	Initiator      string    `json:"Initiator"`
	Time           time.Time `json:"Time"`
	MCLocationType uint8     `json:"MCLocationType"`
	NetAddress     string    `json:"NetAddress"`
	// Ex is the extended data as the MPS gives it, one character a byte;
	// ExStr what it says, or null where it is not decoded.
	Ex    string  `json:"Ex"`
	ExStr *string `json:"ExStr"`
	// Desc is Presence's: the record in a sentence.
	Desc string `json:"Desc"`
}

// auditPage is the MPS's page: one ReadRecords call's worth.
const auditPage = 10

// amtAuditLog answers a page of the audit log. As the MPS, newest first,
// startIndex records of the newest skipped, a page of 10; count=N
// (Presence's) asks for N records instead, up to the whole log. Presence
// reads the whole log to page it, so a page is always consistent with
// totalCnt.
func (a *API) amtAuditLog(w http.ResponseWriter, r *http.Request, guid string) {
	q := r.URL.Query()
	start, count := 0, auditPage
	if s := q.Get("startIndex"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > wsman.DefaultLimits.MaxRecords {
			writeAMTError(w, http.StatusBadRequest, fmt.Sprintf("startIndex must be a whole number from 0 to %d.", wsman.DefaultLimits.MaxRecords))
			return
		}
		start = n
	}
	if s := q.Get("count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > wsman.DefaultLimits.MaxRecords {
			writeAMTError(w, http.StatusBadRequest, fmt.Sprintf("count must be a whole number from 1 to %d.", wsman.DefaultLimits.MaxRecords))
			return
		}
		count = n
	}
	log, err := a.cfg.AMT.Client().AuditLog(r.Context(), guid)
	if err != nil {
		a.amtFail(w, r, guid, "audit log", err)
		return
	}
	recs := log.Records
	out := AMTAuditLog{TotalCount: len(recs), Records: []AMTAuditRecord{}}
	// AMT returns the oldest first.
	for i := len(recs) - 1 - start; i >= 0 && len(out.Records) < count; i-- {
		out.Records = append(out.Records, auditRecord(recs[i]))
	}
	writeJSON(w, out)
}

func auditRecord(rec wsman.AuditRecord) AMTAuditRecord {
	ex := make([]rune, len(rec.Extended))
	for i, b := range rec.Extended {
		ex[i] = rune(b)
	}
	out := AMTAuditRecord{
		AuditAppID: rec.AppID, EventID: rec.EventID, InitiatorType: rec.InitiatorType,
		AuditApp: rec.App, Event: cmp.Or(rec.Event, "#"+strconv.Itoa(int(rec.EventID))), Initiator: rec.Initiator,
		Time: rec.Time, MCLocationType: rec.LocationType, NetAddress: rec.NetAddress, Ex: string(ex), Desc: rec.Description,
	}
	// The description is the event, then ": " and what the extended data
	// says where it is decoded.
	if rec.Event != "" {
		if s, ok := strings.CutPrefix(rec.Description, rec.Event+": "); ok {
			s = strings.TrimSuffix(s, ".")
			out.ExStr = &s
		}
	}
	return out
}

// AMTConsentCode is the body of POST /api/v1/amt/userConsentCode/{guid}.
// The code may be a number or a string of digits.
type AMTConsentCode struct {
	ConsentCode json.RawMessage `json:"consentCode"`
}

// code reads the six-digit code.
func (c AMTConsentCode) code() (int, bool) {
	raw := bytes.TrimSpace(c.ConsentCode)
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	s = strings.TrimSpace(s)
	if len(s) == 0 || len(s) > 6 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func (a *API) amtConsentStart(w http.ResponseWriter, r *http.Request, guid string) {
	ctx, cancel := a.writeCtx(r)
	defer cancel()
	o, err := a.cfg.AMT.StartConsent(ctx, guid)
	if err != nil {
		a.amtConsentFail(w, r, guid, "StartOptIn", err)
		return
	}
	a.log.Info("api: AMT consent requested", "device", guid, "user", who(r), "remote", r.RemoteAddr, "state", o.OptInState)
	st := o.OptInState
	writeJSON(w, AMTMethodResult{Header: methodHeader(uriOptInService, "StartOptIn"), Body: returnValue(0), OptInState: &st})
}

func (a *API) amtConsentSend(w http.ResponseWriter, r *http.Request, guid string) {
	var req AMTConsentCode
	err := decodeAMTBody(w, r, &req)
	code, ok := req.code()
	if err != nil || !ok {
		writeAMTError(w, http.StatusBadRequest, `The body must be JSON like {"consentCode": 123456}: the six digits the device shows.`)
		return
	}
	ctx, cancel := a.writeCtx(r)
	defer cancel()
	if err := a.cfg.AMT.SendConsentCode(ctx, guid, code); err != nil {
		a.amtConsentFail(w, r, guid, "SendOptInCode", err)
		return
	}
	a.log.Info("api: AMT consent code accepted", "device", guid, "user", who(r), "remote", r.RemoteAddr)
	writeJSON(w, AMTMethodResult{Header: methodHeader(uriOptInService, "SendOptInCode"), Body: returnValue(0)})
}

func (a *API) amtConsentCancel(w http.ResponseWriter, r *http.Request, guid string) {
	ctx, cancel := a.writeCtx(r)
	defer cancel()
	if err := a.cfg.AMT.CancelConsent(ctx, guid); err != nil {
		a.amtConsentFail(w, r, guid, "CancelOptIn", err)
		return
	}
	a.log.Info("api: AMT consent cancelled", "device", guid, "user", who(r), "remote", r.RemoteAddr)
	writeJSON(w, AMTMethodResult{Header: methodHeader(uriOptInService, "CancelOptIn"), Body: returnValue(0)})
}

// amtConsentFail answers a failed consent call: a ReturnValue as the
// MPS's statusMapper answers it, anything else as every AMT route does.
func (a *API) amtConsentFail(w http.ResponseWriter, r *http.Request, guid, method string, err error) {
	var se *wsman.StatusError
	if !errors.As(err, &se) || errors.Is(err, wsman.ErrConsentRequired) {
		code, sentence := amtStatus(err)
		a.log.Info("api: AMT consent call failed", "device", guid, "method", method, "user", who(r), "status", code, "why", sentence)
		writeAMTError(w, code, sentence)
		return
	}
	code, suggestion := http.StatusBadRequest, ""
	switch se.Value {
	case wsman.StatusNotReady:
		code, suggestion = http.StatusConflict, "Cancel the request in progress (DELETE this path), or wait for it to expire, then ask again."
	case wsman.StatusUnsupported:
		code, suggestion = http.StatusUnprocessableEntity, "Check the six digits the device shows and send them again."
	}
	rv := returnValue(se.Value)
	a.log.Info("api: AMT consent call refused by the device", "device", guid, "method", method, "user", who(r), "value", se.Value)
	sentence := toolbox.Sentence(err)
	writeAMTErrorBody(w, code, AMTError{
		Error: errorKind(code), Message: sentence, ErrorDescription: sentence,
		Details:     &AMTErrorDetails{ReturnValue: rv.ReturnValue, ReturnValueStr: rv.ReturnValueStr, Suggestion: suggestion},
		AMTResponse: &AMTMethodResult{Header: methodHeader(uriOptInService, method), Body: rv},
	})
}

// AMTFeatures is GET /api/v1/amt/features/{guid}: the redirection
// switches and consent, by the MPS's names (KVM, SOL, IDER) and by
// Console's and the POST body's (enableKVM, enableSOL, enableIDER).
type AMTFeatures struct {
	UserConsent  string `json:"userConsent"` // none, kvm or all ("" for a policy of another value)
	Redirection  bool   `json:"redirection"`
	KVM          bool   `json:"KVM"`
	SOL          bool   `json:"SOL"`
	IDER         bool   `json:"IDER"`
	EnableKVM    bool   `json:"enableKVM"`
	EnableSOL    bool   `json:"enableSOL"`
	EnableIDER   bool   `json:"enableIDER"`
	OptInState   int    `json:"optInState"`
	KVMAvailable bool   `json:"kvmAvailable"`
	// Status is the MPS's answer to a change ("Updated AMT Features").
	Status string `json:"status,omitempty"`
}

// AMTFeaturesRequest is the body of POST /api/v1/amt/features/{guid}. A
// key left out keeps its value (the MPS requires all four). The MPS's
// ocr, remoteErase and enablePlatformErase are refused if true.
type AMTFeaturesRequest struct {
	UserConsent         *string `json:"userConsent"`
	EnableSOL           *bool   `json:"enableSOL"`
	EnableIDER          *bool   `json:"enableIDER"`
	EnableKVM           *bool   `json:"enableKVM"`
	OCR                 *bool   `json:"ocr"`
	RemoteErase         *bool   `json:"remoteErase"`
	EnablePlatformErase *bool   `json:"enablePlatformErase"`
}

var consentPolicies = map[string]uint32{"none": wsman.OptInNone, "kvm": wsman.OptInKVM, "all": wsman.OptInAll}

func features(f wsman.Features) AMTFeatures {
	out := AMTFeatures{Redirection: f.Redirection, KVM: f.KVM, SOL: f.SOL, IDER: f.IDER,
		EnableKVM: f.KVM, EnableSOL: f.SOL, EnableIDER: f.IDER, OptInState: f.OptInState, KVMAvailable: f.KVMAvailable}
	for name, v := range consentPolicies {
		if v == f.OptInRequired {
			out.UserConsent = name
		}
	}
	return out
}

func (a *API) amtFeatures(w http.ResponseWriter, r *http.Request, guid string) {
	f, err := a.cfg.AMT.Client().Features(r.Context(), guid)
	if err != nil {
		a.amtFail(w, r, guid, "features", err)
		return
	}
	writeJSON(w, features(f))
}

func (a *API) amtSetFeatures(w http.ResponseWriter, r *http.Request, guid string) {
	var req AMTFeaturesRequest
	if err := decodeAMTBody(w, r, &req); err != nil {
		writeAMTError(w, http.StatusBadRequest, `The body must be JSON like {"userConsent": "kvm", "enableSOL": true, "enableIDER": false, "enableKVM": true}.`)
		return
	}
	var policy *uint32
	if req.UserConsent != nil {
		p, ok := consentPolicies[strings.ToLower(*req.UserConsent)]
		if !ok {
			writeAMTError(w, http.StatusBadRequest, "userConsent must be none, kvm or all.")
			return
		}
		policy = &p
	}
	for _, v := range []*bool{req.OCR, req.RemoteErase, req.EnablePlatformErase} {
		if v != nil && *v {
			writeAMTError(w, http.StatusNotImplemented, "Presence does not switch on one-click recovery or remote platform erase.")
			return
		}
	}
	ctx, cancel := a.writeCtx(r)
	defer cancel()
	var after wsman.Features
	// One turn: read, change what differs, read again.
	err := a.cfg.AMT.Client().Do(ctx, guid, func(ctx context.Context, s *wsman.Session) error {
		f, err := s.Features(ctx)
		if err != nil {
			return err
		}
		now := wsman.FeatureSwitches{SOL: f.SOL, IDER: f.IDER, KVM: f.KVM}
		want := now
		for _, c := range []struct {
			v   *bool
			dst *bool
		}{{req.EnableSOL, &want.SOL}, {req.EnableIDER, &want.IDER}, {req.EnableKVM, &want.KVM}} {
			if c.v != nil {
				*c.dst = *c.v
			}
		}
		if want != now || (want.SOL || want.IDER || want.KVM) != f.Redirection {
			if err := s.SetFeatures(ctx, want); err != nil {
				return err
			}
		}
		if policy != nil && *policy != f.OptInRequired {
			if err := s.SetOptInRequired(ctx, *policy); err != nil {
				return err
			}
		}
		after, err = s.Features(ctx)
		return err
	})
	if err != nil {
		code, sentence := amtStatus(err)
		a.log.Info("api: AMT features change refused", "device", guid, "user", who(r), "remote", r.RemoteAddr, "status", code, "why", sentence)
		writeAMTError(w, code, sentence)
		return
	}
	a.log.Info("api: AMT features changed", "device", guid, "user", who(r), "remote", r.RemoteAddr,
		"sol", after.SOL, "ider", after.IDER, "kvm", after.KVM, "consent", after.OptInRequired)
	out := features(after)
	out.Status = "Updated AMT Features"
	writeJSON(w, out)
}
