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
// [Browse] runs one round of queries and returns what answered. An
// instance can vanish without a goodbye (a crash, a cable pulled), so
// [Watch] re-browses periodically and drops instances that stop answering.
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
// # How it works
//
// Advertise runs a small mDNS responder of this package, on
// github.com/miekg/dns messages and golang.org/x/net/ipv4 and ipv6 sockets
// bound to port 5353, which other mDNS software on the host can share. It
// announces the records when it starts and once more a second later
// (RFC 6762 section 8.3); answers queries for them by multicast, or by
// unicast to queriers that ask for it or use another port than 5353,
// leaving out the answers a query already knows; and sends goodbyes (TTL
// 0) when closed. It answers at most 10 queries a second per socket, after
// a burst of 20. It does not probe for name conflicts or defend its names.
// [Browse] sends its own queries and collects the answers for one round;
// a goodbye heard during the round removes the instance.
//
// Each goroutine belongs to the [Advertiser] or the [Browse] call that
// started it: [Advertiser.Close] and Browse return only once all of theirs
// have exited, and Close sends the goodbye only after the goroutines that
// answer and announce have stopped, so nothing follows it.
//
// Packets are accepted only from the chosen interfaces and, where the
// platform says (not on Windows), only when sent to the mDNS group, which
// keeps out unicast queries from off the link; packets over 9000 bytes
// (RFC 6762 section 17) are dropped unread.
//
// Names are composed as github.com/grandcat/zeroconf v1.0.0 composes them,
// and older Presence versions, which advertise and browse with that
// library, interoperate with this one: its browser ignores goodbyes, and
// its client trims dots off instance names, so Advertise refuses a name
// ending in a dot. Its Server and Resolver are not used because their
// goroutines cannot be waited for: Server.Shutdown right after Register
// can misuse a WaitGroup (the receive goroutines join it only once they
// run), returns early, leaking sockets and goroutines, if the goodbye
// does not pack, and leaves the announcement goroutine running for up to
// 3.5 s; the Resolver's receive and query goroutines outlive the closing
// of its results channel.
package discovery
