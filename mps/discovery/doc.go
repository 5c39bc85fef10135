// Package discovery advertises a Presence instance over multicast DNS and
// browses for the others on the LAN, using DNS-SD service type
// "_amt-mps._tcp" in the "local." domain (RFC 6762, RFC 6763).
//
// An instance is advertised with [Advertise]: the SRV record names the
// console proxy port, and the TXT record carries
//
//	txtvers=1           format version; browsers ignore any other value
//	proxy=<port>        console proxy port (equal to the SRV port)
//	api=<port>          REST API port (left out when there is none)
//	id=<id>             instance ID, see [NewID]; lets an instance skip itself
//	version=<version>   Presence version (left out when empty)
//	fp=<hex>            SHA-256 of the MPS root certificate (DER), 64 lowercase
//	                    hex digits, see [Fingerprint] (left out when empty)
//
// [Browse] runs one round of queries and returns what answered. mDNS has no
// reliable removal events in the library underneath, so [Watch] re-browses
// periodically and drops instances that stop answering.
//
// Everything received is hostile input: names, TXT strings and addresses
// are validated and capped, and an answer missing a required key (txtvers,
// proxy, id) or with a malformed one is ignored. Strings in an [Instance]
// are still untrusted text; print them with %q or as slog attributes.
//
// # Where the packets go
//
// With nil interfaces, Advertise and Browse use every interface that is up
// and has the MULTICAST flag, which is what a LAN deployment wants. Demo mode
// and tests pass the loopback interface and 127.0.0.1 explicitly; see
// [AdvertiseConfig.IPs].
//
// # The library underneath
//
// mDNS is done by github.com/grandcat/zeroconf v1.0.0 (January 2020, the only
// version available to us). What this package does about its known problems:
//
//   - Server.Shutdown returns early, leaking its sockets and goroutines, if
//     packing the goodbye message fails. Advertise packs the same records
//     before registering and refuses a configuration that would not pack,
//     so the goodbye cannot fail later.
//   - Server.Shutdown right after Register can panic ("sync: WaitGroup is
//     reused before previous Wait has returned"): the receive goroutines
//     register with the server's WaitGroup only once they run. Advertise
//     returns only when they have (see zeroconf.go), so Close is safe at
//     any time.
//   - Register never advertises loopback addresses and appends ".local" to a
//     host name even when it already ends in ".local". Advertise always uses
//     RegisterProxy, with addresses and a host name it chose and checked.
//   - The announcement goroutine started by Register is not stopped by
//     Shutdown. It runs for at most about 3.5 s after Advertise; after
//     [Advertiser.Close] it only fails to write to the closed sockets, so no
//     packet leaves, and then exits on its own.
//   - Browse closes the results channel itself and blocks on each send;
//     [Browse] drains the channel until it is closed.
//   - Browse never reports removals (goodbye packets are dropped); see [Watch].
//   - The library writes a line to the standard logger when it cannot use
//     IPv4 or IPv6 on the chosen interfaces.
package discovery
