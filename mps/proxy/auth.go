package proxy

// authResult is the outcome of a credential check.
type authResult int

const (
	authOK      authResult = iota
	authFailed             // wrong or missing credentials
	authBlocked            // too many failures from this source
)

// authenticate checks user/pass for the connection's source address,
// applying the limiter.
func (pc *conn) authenticate(user, pass string) authResult {
	s := pc.s
	if s.limiter.Blocked(pc.src) {
		return authBlocked
	}
	if s.cfg.Auth != nil && s.cfg.Auth(user, pass) {
		s.limiter.Succeed(pc.src)
		return authOK
	}
	s.limiter.Fail(pc.src)
	s.authFailures.Add(1)
	return authFailed
}
