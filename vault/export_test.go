package vault

// MaxUnknownForTest is the bound of the cache of absent accounts.
const MaxUnknownForTest = maxUnknown

// CacheSizeForTest returns the number of cached present and absent accounts.
func (a *Accounts) CacheSizeForTest() (known, unknown int) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return len(a.known), len(a.unknown)
}
