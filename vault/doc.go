// Package vault keeps Presence's secrets: the MPS certificate authority,
// the accounts AMT devices use to log in over CIRA, console accounts and
// AMT admin credentials.
//
// # Stores
//
// [Store] is a small key/value interface with three implementations:
//
//   - the OS keychain (a later change; [Open] reports [ErrUnavailable] for it
//     until then),
//   - [File], one file per key in a private directory, for headless servers,
//   - [Memory], for tests and throwaway demos.
//
// Every store holds at most [MemoryItemLimit] bytes per key. That is the
// Windows Credential Manager limit, the smallest of the OS keychains (macOS
// allows about 3000 bytes), so data that fits the memory and file stores
// also fits the keychain, and `presence vault migrate` can copy items one by
// one with Get and Set.
//
// Keys are slash-separated ASCII paths such as "ca/root.key" or
// "account/cira/admin". The file store names each file after the SHA-256 of
// its key, so keys that differ only in case stay apart on case-insensitive
// file systems, and no key can name a path outside the store's directory.
// The file store is protected by file permissions only (0600 files in a
// 0700 directory), like an SSH private key; it is not encrypted.
//
// # Certificate authority
//
// AMT accepts an MPS only if its certificate chains to a root installed in
// the device, so the root must outlive every server certificate and is never
// regenerated silently: [InitCA] refuses to replace it without Force, and
// [LoadCA] reports a missing or damaged CA instead of making a new one.
//
// Each private key is stored as PKCS#8 DER in an item of its own
// ("ca/root.key", "ca/server.key"), next to its DER certificate
// ("ca/root.crt", "ca/server.crt"). An RSA-3072 key is about 1.8 KB in
// PKCS#8 DER, inside the per-item limit, so no key needs splitting. We do not
// wrap the keys with a data key and store an encrypted blob: the data key
// would live in the same store, so it would protect nothing that the store
// does not already protect, and it would add a second format to migrate and
// back up. The certificate is written last, so an interrupted first
// initialization leaves no root behind that a device could have trusted.
//
// # Accounts
//
// [Accounts] keeps one password per (kind, name) under "account/KIND/NAME".
// Passwords are stored retrievable, because AMT digest authentication needs
// them in the clear; the store is the protection. [Accounts.Verify] compares
// in constant time and caches digests, since it sits on the CIRA handshake
// path.
//
// # Secrets in logs
//
// [Secret] renders as "REDACTED" through fmt, log/slog and encoding/json.
// Call [Secret.Reveal] only where the value is really needed. fmt cannot call
// methods on unexported struct fields, and encoding/json writes string map
// keys as they are, so keep a Secret in a variable or an exported field,
// never in an unexported field of a struct that gets printed or as a map key.
package vault
