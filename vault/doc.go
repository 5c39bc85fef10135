// Package vault keeps Presence's secrets: the MPS certificate authority,
// the accounts AMT devices use to log in over CIRA, console accounts and
// AMT admin credentials.
//
// # Stores
//
// [Store] is a small key/value interface with three implementations:
//
//   - [Keychain], the OS keychain (Secret Service on Linux, the login
//     keychain on macOS, the Credential Manager on Windows),
//   - [File], one file per key in a private directory, for headless servers,
//   - [Memory], for tests and throwaway demos.
//
// [Open] picks one by name, as the --vault flag does, and [Migrate] copies
// every item of one store into another (`presence vault migrate`), checking
// each and deleting nothing.
//
// Every store holds at most [ItemLimit] bytes per key. That is the
// Windows Credential Manager limit, the smallest of the OS keychains (macOS
// allows about 3000 bytes), so data that fits the memory and file stores
// also fits the keychain, and Migrate can copy items one by one with Get and
// Set. A larger value (a PEM bundle, say) goes through [SetLarge] and
// [GetLarge], which split it into items of that size under a header with
// its length and SHA-256.
//
// Keys are slash-separated ASCII paths such as "ca/root.key" or
// "account/cira/admin". The file store names each file after the SHA-256 of
// its key, so keys that differ only in case stay apart on case-insensitive
// file systems, and no key can name a path outside the store's directory.
// The file store is protected by file permissions only (0600 files in a
// 0700 directory), like an SSH private key; it is not encrypted.
//
// # The keychain store
//
// Each item is a keychain entry of the service "Presence" whose account
// name is the key. Every call to the OS runs under a timeout (ten seconds by
// default), because the OS may wait for an unlock prompt; errors say whether
// the keychain is missing ([ErrUnavailable]: log in to a desktop session, or
// use --vault file on a headless server) or locked ([ErrLocked]). [Open]
// checks this once, so `presence serve --vault keychain` fails at start.
//
// The OS keychains cannot list their entries (go-keyring has no such call),
// so the store keeps an index of its key names. The names are not secret
// ("account/console/alice", "ca/root.key"), so the index lives next to the
// other data, in the directory dataDir/keychain-index: one empty item per
// key, written by a [File] store. We chose files over index items in the
// keychain itself because the keychain has no compare-and-swap: two processes
// (`presence account add` while `presence serve` runs) rewriting a shared
// index item would lose each other's names, and an index too large for one
// item would need chunks updated together. With one file per name, every
// index change is a single atomic create or remove, so processes never
// overwrite each other's names and need no lock file; within a process,
// operations on the same key are serialized.
//
// The order of writes keeps one invariant: every keychain item of the store
// is in the index. Set adds the name before it writes the item (and takes it
// out again if the keychain refused), and Delete removes the item before the
// name. A crash between the two steps, or an item deleted with another tool,
// can therefore only leave a name without an item. List reads the index
// alone and includes such a name (probing every item would be slow and may
// raise unlock prompts); Get reports [ErrNotFound] for it, Delete removes
// it, and Migrate counts it as missing. Get asks the keychain directly, so an
// item whose name the index lost is still found. Only two processes changing
// the same key at the same moment (a Delete racing a Set) can leave an item
// unlisted; the next Set or Delete of that key repairs it.
//
// One keychain store per data directory and service: two data directories
// using the keychain share its items but not their indexes.
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
// # Fleets
//
// Instances that share one MPS root form a fleet (../../shared/fleet.md).
// [Invite] gathers a fleet's root, its CIRA and console accounts and its
// id (made by the first invite, kept under "fleet/id"); [Bundle.Seal]
// encrypts that with a passphrase exactly as a CA backup is encrypted
// (scrypt and AES-256-GCM, one PEM block); [OpenBundle] decrypts and checks
// it without touching a store, and [Bundle.Join] stores it on a new
// instance with a server certificate for that instance's own address,
// refusing to replace a different root unless forced.
//
// Instances prove themselves to each other with peer certificates that
// each issues itself from the root ([CA.IssuePeer]): a new ECDSA P-256 key,
// a day's life, client and server authentication, and the instance id as
// the one URI SAN presence-peer://ID. [VerifyPeer] accepts only those, and
// [PeerIdentity] serves the current one to both ends of a mutual-TLS link,
// renewing it at 2/3 of its life (see peer.go for the reasons).
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
