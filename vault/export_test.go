package vault

// MaxUnknownForTest is the bound of the cache of absent accounts.
const MaxUnknownForTest = maxUnknown

// CacheSizeForTest returns the number of cached present and absent accounts.
func (a *Accounts) CacheSizeForTest() (known, unknown int) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.known), len(a.unknown)
}

// KeyringForTest is the part of go-keyring a [Keychain] uses.
type KeyringForTest = keyringAPI

// NewKeychainForTest returns a keychain store that uses kr instead of the OS
// keychain.
func NewKeychainForTest(opts KeychainOptions, kr KeyringForTest) (*Keychain, error) {
	opts.keyring = kr
	return NewKeychain(opts)
}

// SameLockForTest reports whether operations on keys a and b share a lock.
func (k *Keychain) SameLockForTest(a, b string) bool { return k.stripe(a) == k.stripe(b) }

// LargeChunkKeyForTest returns the key of part i of generation gen of the
// large value at key.
func LargeChunkKeyForTest(key, gen string, i int) string { return chunkKey(key, gen, i) }

// ParseBundleForTest checks the plaintext of a join bundle, as OpenBundle
// does after decrypting it.
func ParseBundleForTest(plain []byte) error {
	_, err := parseBundle(plain)
	return err
}

// SealBundleForTest seals plain as a join bundle with the given headers,
// which a real bundle takes from its contents.
func SealBundleForTest(plain []byte, passphrase, rootSHA256, fleetID string) ([]byte, error) {
	return joinBundle.seal(passphrase, map[string]string{"Root-SHA256": rootSHA256, "Fleet-ID": fleetID}, plain)
}
