// Package proxy is the console front of the MPS: one listener that speaks
// both an HTTP proxy (CONNECT and absolute-form requests) and SOCKS
// (SOCKS5 per RFC 1928/1929, and SOCKS4a), split on the first byte of each
// connection. It knows no APF: every destination is reached through a
// [DialFunc] supplied by the caller, which resolves the console's host name
// to a device and refuses anything else. The proxy never does DNS lookups.
package proxy
