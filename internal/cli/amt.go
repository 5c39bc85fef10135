package cli

// presence amt: the AMT toolbox from the command line, through the running
// instance's API (its /api/v1/amt endpoints, the Intel toolkit MPS's), as
// presence devices reaches it.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/presence-mps/presence/mps/api"
	"github.com/presence-mps/presence/mps/toolbox"
	"github.com/presence-mps/presence/mps/wsman"
)

const amtUsage = `usage: presence amt COMMAND DEVICE [flags]

  power    DEVICE [on|off|cycle|reset|bios|pxe|sleep|hibernate|soft-off|soft-reset]
           with no action: the power state and the actions the device offers now
  info     DEVICE                      AMT version, control mode and general settings
  hardware DEVICE                      chassis, board, BIOS, CPU, memory and disks
  log      DEVICE [--audit]            the event log (or the security audit log), newest first
  consent  DEVICE [--code N | --cancel]
           with no flag: ask the device to show a consent code to its user
  features DEVICE [--sol on|off] [--ider on|off] [--kvm on|off] [--user-consent none|kvm|all]
           with no flag: the redirection switches and the consent policy

DEVICE is a GUID (any form), the host name AMT announced, or an alias. Each
command takes --format table|json|csv and the flags that say where the
instance is (--data-dir, --api-addr, --user).
`

// amtTimeout bounds a command's API call: the longest operations (the
// event log, a boot) take the device up to a minute.
const amtTimeout = 2 * time.Minute

func runAMT(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 {
		return usageError{"want a command\n\n" + amtUsage}
	}
	if isHelp(args[0]) {
		fmt.Fprint(env.Stdout, amtUsage)
		return nil
	}
	cmds := map[string]func(context.Context, *amtCmd) error{
		"power": amtPower, "info": amtInfo, "hardware": amtHardware,
		"log": amtLog, "consent": amtConsent, "features": amtFeatures,
	}
	run, ok := cmds[args[0]]
	if !ok {
		return usageError{fmt.Sprintf("unknown amt command %q\n\n%s", args[0], amtUsage)}
	}
	c := &amtCmd{name: args[0], env: env, fs: flag.NewFlagSet("amt "+args[0], flag.ContinueOnError)}
	c.f.register(c.fs, true)
	c.args = args[1:]
	return run(ctx, c)
}

// amtCmd is one presence amt command: its flags, its DEVICE and the rest
// of its arguments, and its API client.
type amtCmd struct {
	name   string
	env    Env
	fs     *flag.FlagSet
	f      clientFlags
	args   []string
	device string
	extra  []string
	api    *apiClient
}

// parse parses the flags (before and after the arguments) and opens the
// client; the command takes DEVICE and up to maxExtra more arguments.
func (c *amtCmd) parse(maxExtra int, usage string) error {
	var pos []string
	args := c.args
	for {
		if err := parse(c.fs, args, c.env); err != nil {
			return err
		}
		args = c.fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) == 0 || len(pos) > 1+maxExtra {
		return usageError{"usage: presence amt " + usage}
	}
	c.device, c.extra = pos[0], pos[1:]
	cl, err := c.f.client(c.env)
	if err != nil {
		return err
	}
	cl.http.Timeout = amtTimeout
	c.api = cl
	return nil
}

// path is the endpoint of route for the command's device.
func (c *amtCmd) path(route string) string {
	return "/api/v1/amt/" + route + "/" + url.PathEscape(c.device)
}

// call sends a request to an AMT endpoint and decodes the answer into out.
// An error answer becomes an error with its sentence.
func (c *amtCmd) call(ctx context.Context, method, path string, body, out any) error {
	return c.api.do(ctx, method, path, body, out)
}

// print prints v as JSON, or rows as a table or CSV.
func (c *amtCmd) print(v any, header []string, rows [][]string) error {
	if c.f.format == "json" {
		return printJSON(c.env.Stdout, v)
	}
	return printRows(c.env.Stdout, c.f.format, header, rows)
}

// --- power ---

// AMTPowerInfo is presence amt power DEVICE --format json.
type AMTPowerInfo struct {
	Device             string              `json:"device"`
	PowerState         int                 `json:"powerstate"`
	State              string              `json:"state"`
	OSPowerSavingState *int                `json:"OSPowerSavingState,omitempty"`
	Actions            []AMTPowerOffer     `json:"actions"`
	Result             *api.AMTReturnValue `json:"result,omitempty"`
}

// AMTPowerOffer is an action the device offers.
type AMTPowerOffer struct {
	Action      string `json:"action"`
	Code        int    `json:"code"`
	Description string `json:"description"`
}

var osPowerSaving = map[int]string{0: "unknown", 1: "unsupported", 2: "full power", 3: "power saving"}

func amtPower(ctx context.Context, c *amtCmd) error {
	if err := c.parse(1, "power DEVICE [on|off|cycle|reset|bios|pxe|sleep|hibernate|soft-off|soft-reset]"); err != nil {
		return err
	}
	if len(c.extra) == 0 {
		return amtPowerShow(ctx, c)
	}
	name := strings.ToLower(c.extra[0])
	// bios and pxe have two forms (from off: power on to; from on: reset
	// to): the CLI reads the state and picks, as the window does.
	var ps wsman.PowerState
	if name == "bios" || name == "pxe" {
		var st api.AMTPowerState
		if err := c.call(ctx, "GET", c.path("power/state"), nil, &st); err != nil {
			return err
		}
		ps.State = st.PowerState
	}
	act, err := toolbox.ParseAction(name, ps)
	if err != nil {
		return usageError{strings.TrimPrefix(err.Error(), "toolbox: ")}
	}
	route := "power/action"
	if act >= 100 {
		route = "power/bootOptions" // the MPS's route for boot actions
	}
	var res api.AMTMethodResult
	if err := c.call(ctx, "POST", c.path(route), api.AMTPowerRequest{Action: new(int(act))}, &res); err != nil {
		return err
	}
	if res.Body.ReturnValue != 0 {
		return errors.New(cmp.Or(res.Message, fmt.Sprintf("The device refused: %s (%d).", res.Body.ReturnValueStr, res.Body.ReturnValue)))
	}
	if c.f.format == "table" {
		fmt.Fprintf(c.env.Stdout, "%s: %s accepted (action %d)\n", c.device, act, int(act))
		return nil
	}
	return c.print(map[string]any{"device": c.device, "action": act.Name(), "code": int(act), "description": act.String(),
		"returnValue": res.Body.ReturnValue, "returnValueStr": res.Body.ReturnValueStr},
		[]string{"DEVICE", "ACTION", "CODE", "DESCRIPTION", "RESULT"},
		[][]string{{c.device, act.Name(), strconv.Itoa(int(act)), act.String(), res.Body.ReturnValueStr}})
}

func amtPowerShow(ctx context.Context, c *amtCmd) error {
	var st api.AMTPowerState
	if err := c.call(ctx, "GET", c.path("power/state"), nil, &st); err != nil {
		return err
	}
	var caps api.AMTCapabilities
	if err := c.call(ctx, "GET", c.path("power/capabilities"), nil, &caps); err != nil {
		return err
	}
	state := wsman.PowerState{State: st.PowerState}.String()
	info := AMTPowerInfo{Device: c.device, PowerState: st.PowerState, State: state,
		OSPowerSavingState: st.OSPowerSavingState, Actions: []AMTPowerOffer{}}
	for _, cp := range caps {
		a := toolbox.Action(cp.Action)
		o := AMTPowerOffer{Action: strconv.Itoa(cp.Action), Code: cp.Action, Description: cp.Label}
		if a.Valid() {
			o.Action, o.Description = a.Name(), a.String()
		}
		info.Actions = append(info.Actions, o)
	}
	switch c.f.format {
	case "json":
		return printJSON(c.env.Stdout, info)
	case "table":
		line := fmt.Sprintf("%s is %s (power state %d)", c.device, state, st.PowerState)
		if st.OSPowerSavingState != nil {
			line += ", its OS at " + cmp.Or(osPowerSaving[*st.OSPowerSavingState], strconv.Itoa(*st.OSPowerSavingState))
		}
		fmt.Fprintln(c.env.Stdout, line)
		if len(info.Actions) == 0 {
			fmt.Fprintln(c.env.Stdout, "It offers no power action now.")
			return nil
		}
		fmt.Fprintln(c.env.Stdout)
		rows := make([][]string, 0, len(info.Actions))
		for _, o := range info.Actions {
			rows = append(rows, []string{o.Action, strconv.Itoa(o.Code), o.Description})
		}
		return printRows(c.env.Stdout, "table", []string{"ACTION", "CODE", "DESCRIPTION"}, rows)
	}
	rows := make([][]string, 0, len(info.Actions))
	for _, o := range info.Actions {
		rows = append(rows, []string{c.device, state, strconv.Itoa(st.PowerState), o.Action, strconv.Itoa(o.Code), o.Description})
	}
	return printRows(c.env.Stdout, "csv", []string{"DEVICE", "STATE", "POWER STATE", "ACTION", "CODE", "DESCRIPTION"}, rows)
}

// --- info ---

// AMTInfo is presence amt info DEVICE --format json.
type AMTInfo struct {
	Device            string                     `json:"device"`
	AMT               string                     `json:"amt"`
	ControlMode       string                     `json:"controlMode"`
	ProvisioningState string                     `json:"provisioningState"`
	Firmware          map[string]string          `json:"firmware"`
	GeneralSettings   api.AMTGeneralSettingsBody `json:"generalSettings"`
}

var provisioningStates = map[int]string{0: "pre-provisioning", 1: "in provisioning", 2: "post-provisioning"}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func amtInfo(ctx context.Context, c *amtCmd) error {
	if err := c.parse(0, "info DEVICE"); err != nil {
		return err
	}
	var v api.AMTVersion
	if err := c.call(ctx, "GET", c.path("version"), nil, &v); err != nil {
		return err
	}
	var g api.AMTGeneralSettings
	if err := c.call(ctx, "GET", c.path("generalSettings"), nil, &g); err != nil {
		return err
	}
	sc := v.SetupAndConfig.Response
	info := AMTInfo{Device: c.device, Firmware: map[string]string{}, GeneralSettings: g.Body,
		ControlMode:       wsman.SetupAndConfiguration{ProvisioningMode: sc.ProvisioningMode}.ControlMode(),
		ProvisioningState: cmp.Or(provisioningStates[sc.ProvisioningState], strconv.Itoa(sc.ProvisioningState))}
	rows := [][]string{}
	for _, id := range v.SoftwareIdentity.Responses {
		info.Firmware[id.InstanceID] = id.VersionString
		if id.InstanceID == "AMT" {
			info.AMT = id.VersionString
		}
	}
	mode := map[string]string{"ACM": "admin control mode (ACM)", "CCM": "client control mode (CCM)"}[info.ControlMode]
	rows = append(rows,
		[]string{"AMT version", cmp.Or(info.AMT, "unknown")},
		[]string{"control mode", cmp.Or(mode, fmt.Sprintf("not provisioned (mode %d)", sc.ProvisioningMode))},
		[]string{"provisioning", info.ProvisioningState})
	for _, id := range v.SoftwareIdentity.Responses {
		if id.InstanceID != "AMT" {
			rows = append(rows, []string{"firmware " + id.InstanceID, id.VersionString})
		}
	}
	b := g.Body
	rows = append(rows,
		[]string{"host name", b.HostName}, []string{"domain name", b.DomainName}, []string{"host OS name", b.HostOSFQDN},
		[]string{"digest realm", b.DigestRealm},
		[]string{"network interface", onOff(b.NetworkInterfaceEnabled)},
		[]string{"ping response", onOff(b.PingResponseEnabled)}, []string{"RMCP ping response", onOff(b.RmcpPingResponseEnabled)},
		[]string{"WS-Man only", onOff(b.WsmanOnlyMode)},
		[]string{"idle wake timeout", fmt.Sprintf("%d min", b.IdleWakeTimeout)},
		[]string{"power source", map[int]string{0: "AC", 1: "DC"}[b.PowerSource]},
		[]string{"privacy level", strconv.Itoa(b.PrivacyLevel)},
		[]string{"DDNS update", onOff(b.DDNSUpdateEnabled)})
	return c.print(info, []string{"FIELD", "VALUE"}, rows)
}

// --- hardware ---

func amtHardware(ctx context.Context, c *amtCmd) error {
	if err := c.parse(0, "hardware DEVICE"); err != nil {
		return err
	}
	var h api.AMTHardware
	if err := c.call(ctx, "GET", c.path("hardwareInfo"), nil, &h); err != nil {
		return err
	}
	var rows [][]string
	if p := h.Chassis.Response; p != nil {
		rows = append(rows, []string{"system", p.Manufacturer, p.Model, p.Version, p.SerialNumber})
	}
	if p := h.Card.Response; p != nil {
		rows = append(rows, []string{"board", p.Manufacturer, p.Model, p.Version, p.SerialNumber})
	}
	if b := h.BIOSElement.Response; b != nil {
		date, _ := b.ReleaseDate["Datetime"].(string)
		if t, err := time.Parse(time.RFC3339, date); err == nil {
			date = t.Format(time.DateOnly)
		}
		rows = append(rows, []string{"BIOS", b.Manufacturer, b.Version, "released " + cmp.Or(date, "?"), ""})
	}
	for i, p := range h.Processor.Responses {
		maker, model := "", p.ElementName
		if i < len(h.Chip.Responses) {
			maker, model = h.Chip.Responses[i].Manufacturer, h.Chip.Responses[i].Version
		}
		rows = append(rows, []string{"CPU", maker, model, fmt.Sprintf("%d MHz (max %d MHz)", p.CurrentClockSpeed, p.MaxClockSpeed), ""})
	}
	for _, m := range h.PhysicalMemory.Responses {
		detail := fmt.Sprintf("%d GB in %s", m.Capacity>>30, m.BankLabel)
		if m.Speed > 0 {
			detail += fmt.Sprintf(", %d MT/s", m.Speed)
		}
		rows = append(rows, []string{"memory", m.Manufacturer, strings.TrimSpace(m.PartNumber), detail, m.SerialNumber})
	}
	for i, d := range h.MediaAccess.Responses {
		maker, model, serial := "", d.ElementName, ""
		if i < len(h.PhysicalPackages.Responses) {
			p := h.PhysicalPackages.Responses[i]
			maker, model, serial = p.Manufacturer, p.Model, p.SerialNumber
		}
		rows = append(rows, []string{"disk", maker, model, fmt.Sprintf("%d GB", d.MaxMediaSize/1_000_000), serial})
	}
	return c.print(h, []string{"COMPONENT", "MANUFACTURER", "MODEL", "DETAIL", "SERIAL"}, rows)
}

// --- log ---

func amtLog(ctx context.Context, c *amtCmd) error {
	audit := c.fs.Bool("audit", false, "the security audit log instead of the event log")
	if err := c.parse(0, "log DEVICE [--audit]"); err != nil {
		return err
	}
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	if *audit {
		var al api.AMTAuditLog
		q := "?startIndex=0&count=" + strconv.Itoa(wsman.DefaultLimits.MaxRecords)
		if err := c.call(ctx, "GET", c.path("log/audit")+q, nil, &al); err != nil {
			return err
		}
		rows := make([][]string, 0, len(al.Records))
		for _, r := range al.Records {
			rows = append(rows, []string{ts(r.Time), r.AuditApp, r.Event, r.Initiator, r.NetAddress, r.Desc})
		}
		return c.print(al, []string{"TIME", "APPLICATION", "EVENT", "INITIATOR", "ADDRESS", "DESCRIPTION"}, rows)
	}
	var evs []api.AMTEvent
	if err := c.call(ctx, "GET", c.path("log/event"), nil, &evs); err != nil {
		return err
	}
	rows := make([][]string, 0, len(evs))
	for _, e := range evs {
		rows = append(rows, []string{ts(e.Time), e.SeverityStr, e.EntityStr, e.Desc})
	}
	return c.print(evs, []string{"TIME", "SEVERITY", "ENTITY", "DESCRIPTION"}, rows)
}

// --- consent ---

var optInStates = map[int]string{0: "not started", 1: "requested", 2: "code displayed", 3: "given", 4: "in session"}

func amtConsent(ctx context.Context, c *amtCmd) error {
	code := c.fs.String("code", "", "send the six-digit code the device's user read off its screen")
	cancel := c.fs.Bool("cancel", false, "cancel the consent request, or end the consent given")
	if err := c.parse(0, "consent DEVICE [--code N | --cancel]"); err != nil {
		return err
	}
	var res api.AMTMethodResult
	switch {
	case *code != "" && *cancel:
		return usageError{"--code and --cancel exclude each other"}
	case *code != "":
		if len(*code) != 6 || strings.Trim(*code, "0123456789") != "" {
			return usageError{fmt.Sprintf("--code %q: the code is the six digits the device shows", *code)}
		}
		if err := c.call(ctx, "POST", c.path("userConsentCode"), api.AMTConsentCode{ConsentCode: json.RawMessage(strconv.Quote(*code))}, &res); err != nil {
			return err
		}
		if c.f.format == "table" {
			fmt.Fprintf(c.env.Stdout, "%s accepted the code: consent is given.\n", c.device)
			return nil
		}
	case *cancel:
		if err := c.call(ctx, "DELETE", c.path("userConsentCode"), nil, &res); err != nil {
			return err
		}
		if c.f.format == "table" {
			fmt.Fprintf(c.env.Stdout, "%s: consent cancelled.\n", c.device)
			return nil
		}
	default:
		if err := c.call(ctx, "GET", c.path("userConsentCode"), nil, &res); err != nil {
			return err
		}
		if c.f.format == "table" {
			if res.OptInState != nil && (*res.OptInState == wsman.OptInReceived || *res.OptInState == wsman.OptInInSession) {
				fmt.Fprintf(c.env.Stdout, "%s: the user has consented already (%s).\n", c.device, optInStates[*res.OptInState])
				return nil
			}
			fmt.Fprintf(c.env.Stdout, "%s now shows a six-digit consent code on its screen. Ask its user to read it to you, then run:\n"+
				"  presence amt consent %s --code NNNNNN\n", c.device, c.device)
			return nil
		}
	}
	st := ""
	if res.OptInState != nil {
		st = optInStates[*res.OptInState]
	}
	return c.print(res, []string{"DEVICE", "RESULT", "CONSENT"}, [][]string{{c.device, res.Body.ReturnValueStr, st}})
}

// --- features ---

// switchFlag is an on|off flag that remembers whether it was given.
type switchFlag struct {
	set, on bool
}

func (s *switchFlag) String() string {
	if !s.set {
		return ""
	}
	return onOff(s.on)
}

func (s *switchFlag) Set(v string) error {
	switch strings.ToLower(v) {
	case "on", "true", "yes", "1":
		s.on = true
	case "off", "false", "no", "0":
		s.on = false
	default:
		return fmt.Errorf("%q: want on or off", v)
	}
	s.set = true
	return nil
}

func (s *switchFlag) ptr() *bool {
	if !s.set {
		return nil
	}
	v := s.on
	return &v
}

func amtFeatures(ctx context.Context, c *amtCmd) error {
	var sol, ider, kvm switchFlag
	c.fs.Var(&sol, "sol", "switch Serial-over-LAN on or off")
	c.fs.Var(&ider, "ider", "switch IDE redirection on or off")
	c.fs.Var(&kvm, "kvm", "switch KVM on or off")
	consent := c.fs.String("user-consent", "", "what needs the user's consent: none, kvm or all (admin control mode only)")
	if err := c.parse(0, "features DEVICE [--sol on|off] [--ider on|off] [--kvm on|off] [--user-consent none|kvm|all]"); err != nil {
		return err
	}
	var f api.AMTFeatures
	if sol.set || ider.set || kvm.set || *consent != "" {
		req := api.AMTFeaturesRequest{EnableSOL: sol.ptr(), EnableIDER: ider.ptr(), EnableKVM: kvm.ptr()}
		if *consent != "" {
			if *consent != "none" && *consent != "kvm" && *consent != "all" {
				return usageError{fmt.Sprintf("--user-consent %q: want none, kvm or all", *consent)}
			}
			req.UserConsent = consent
		}
		if err := c.call(ctx, "POST", c.path("features"), req, &f); err != nil {
			return err
		}
	} else if err := c.call(ctx, "GET", c.path("features"), nil, &f); err != nil {
		return err
	}
	k := onOff(f.KVM)
	if !f.KVMAvailable {
		k = "not on this platform"
	}
	rows := [][]string{
		{"redirection", onOff(f.Redirection)}, {"SOL", onOff(f.SOL)}, {"IDE-R", onOff(f.IDER)}, {"KVM", k},
		{"user consent for", cmp.Or(f.UserConsent, "?")}, {"consent", cmp.Or(optInStates[f.OptInState], strconv.Itoa(f.OptInState))},
	}
	return c.print(f, []string{"FEATURE", "STATE"}, rows)
}
