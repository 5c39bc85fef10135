// Package amtsim simulates Intel AMT devices: the client side of CIRA
// (Client Initiated Remote Access). Tests, load benchmarks, `presence
// simulate` and `presence demo` use it in place of real firmware.
//
// A [Device] dials the MPS over TLS, verifies its certificate against a given
// root (as AMT does), and runs the APF handshake of apf.md §3:
// PROTOCOL_VERSION, the auth and pfwd services, a password USERAUTH_REQUEST
// and one tcpip-forward per announced port, each awaiting its
// REQUEST_SUCCESS. It then sends keepalives (at the interval the MPS asks
// for with KEEPALIVE_OPTIONS_REQUEST), answers the MPS's keepalives, and
// serves the forwarded-tcpip channels the MPS opens: WS-Man over HTTP/1.1
// with digest authentication on 16992 ([WSManHandler]), Serial-over-LAN on
// 16994 ([RedirServer], the redirection protocol that amtterm and web
// consoles speak; [Device.ServeRedirectionListener] also serves it over
// plain TCP), an optional echo service, and accept-then-close on the other
// announced ports. Both directions of every channel obey the APF windows.
// [DialSOL] is the console side of SOL, for tests and benchmarks. A [Fault] makes the
// device misbehave in one of several ways for tests.
//
// # The platform
//
// Behind the WS-Man and redirection services sits a simulated [Platform],
// made from Config.AMT ([AMTConfig]): an AMT version (11.8 by default;
// 12, 15, 16 and others gate what amt-toolbox.md §1.1 says they gate),
// a control mode (ACM, or CCM where consent is always needed), a consent
// policy, an OS agent, a hardware profile ([HardwareProfile]), a
// pre-filled event log and a SOL screen (a shell, or a BIOS setup screen
// drawn with VT100 cursor addressing, colours and line drawing). WS-Man
// answers the toolbox's calls with the shapes real AMT uses (toolbox.go
// lists the classes and their rules): power state and actions, boot
// settings and order, version and control mode, inventory, the event
// log (GetRecords, 21-byte records) and the audit log (ReadRecords),
// user consent (StartOptIn shows a 6-digit code, [Device.ConsentCode],
// logged at Info), and the SOL, IDE-R and KVM switches. The calls change
// the platform: power transitions take effect, boot settings are kept and
// applied by the next boot, consent gates SOL sessions and boot options,
// and actions, consent and failed logins fill the logs in AMT's record
// layouts. [Device.Calls] records every authenticated call, in order.
//
// A [Fleet] runs many devices with deterministic identities ([DeviceUUID],
// [DeviceHostname]), ramps their connections, reconnects them, and reports a
// JSON-marshalable [Summary].
//
// # Primary and backup
//
// A device may hold several MPS entries ([Config] MPS), each with its own
// address, certificate name and, optionally, CIRA account, as AMT does.
// It follows AMT's order (fleet.md §1): it tries the first entry; when
// that fails (refused, TLS, auth, or a tunnel that ended before it was
// up) it repeats the attempt once, then tries the next entry; when the
// last has failed a [Fleet] pauses for the periodic policy interval
// (FleetConfig.RetryInterval, 25 s by default) and starts over at the
// first. A tunnel that was up and ends, whoever ended it, also starts
// over at the first entry, so a backup sends devices home by closing
// their tunnels. Intel documents only "primary, then backup" and "the
// attempt to connect will be repeated once": the per-entry retry and the
// return to the primary are the tolerant readings, not confirmed on real
// firmware. [Summary] ConnectedByMPS shows which entry the devices are on.
// A single entry keeps the plain reconnect backoff.
//
// # Enrolment on the LAN
//
// A device made with [Config] LAN ([LANConfig]) starts unconfigured: it
// serves WS-Man on a LAN address (plain, and TLS with its own certificate)
// and answers the CIRA enrolment classes of enrol.md (enrolment.go lists
// them): trusted roots, MPS entries with their credentials, remote access
// policy rules and their associations, the user-initiated connection
// service and environment detection, with AMT's validations and a count
// of flash writes ([Device.Enrolment]). Once a rule and its servers are
// written and the device is outside the enterprise (or an association
// says "both"), it closes its LAN ports and dials those servers, checking
// their certificates against the installed roots and the SAP's name as
// AMT does; the same state is served over the tunnel, so that removal can
// run there.
//
// The channel and window logic here is written independently of the
// server's (mps/tunnel) on purpose: a test peer that shared code with the
// server would hide the bugs they share. Only the wire codec, mps/apf, is
// common.
//
// # Cost per device
//
// A connected device costs one goroutine (the reader that runs
// [Device.Run]), one TLS connection and a few kilobytes of buffers; the
// keepalive and fault timers are [time.AfterFunc] timers, not goroutines,
// and start at a random offset so that many devices do not tick together.
// Channels add a goroutine per open echo or HTTP channel (two per SOL
// session: the reader and its heartbeat) and allocate their buffers on
// first use.
//
// Every device holds one open file (its TCP connection). A process may hold
// at most the RLIMIT_NOFILE hard limit (20,000 on the load-test machine), so
// fleets of more than a few thousand devices, and all fleets running in the
// same process as the MPS (two descriptors per device), must be split over
// several processes; [NewFleet] refuses a fleet that cannot fit.
package amtsim
