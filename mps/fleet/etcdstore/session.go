package etcdstore

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/connectivity"
)

var (
	errSessionLost = errors.New("etcd session lost: lease not renewed within its TTL")
	errLeaseGone   = errors.New("etcd lease gone")
)

// maxOldLeases bounds the lost sessions' leases kept for revoking.
const maxOldLeases = 8

func isLeaseGone(err error) bool { return errors.Is(err, rpctypes.ErrLeaseNotFound) }

// sessions keeps one session (a lease kept alive) open, and opens a new
// one when it is lost. Each new session makes the worker write the member
// key and every held device again.
func (s *Store) sessions(ctx context.Context) {
	defer s.wg.Done()
	ttl := int64(s.ttl.Seconds())
	var p pause
	for {
		// Grant with our own timeout: NewSession would wait on the
		// session's context, which lives as long as the Store.
		gctx, cancel := context.WithTimeout(ctx, s.opTimeout)
		g, err := s.cli.Grant(gctx, ttl)
		cancel()
		var sess *concurrency.Session
		if err == nil {
			sess, err = concurrency.NewSession(s.cli, concurrency.WithLease(g.ID),
				concurrency.WithTTL(int(ttl)), concurrency.WithContext(ctx))
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.opDone(fmt.Errorf("grant lease: %v", err))
			if !p.wait(ctx) {
				return
			}
			continue
		}
		p.reset()
		s.opened(g.ID)
		s.opDone(nil)

		lost := s.hold(ctx, sess)
		sess.Orphan() // ends its keepalive goroutine; idempotent
		if ctx.Err() != nil {
			return
		}
		s.lost(g.ID, lost)
	}
}

// hold waits until sess is lost (or the worker found its lease gone) or
// ctx ends, and says why.
func (s *Store) hold(ctx context.Context, sess *concurrency.Session) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sess.Done():
			return errSessionLost
		case id := <-s.renewc:
			if id == sess.Lease() {
				return errLeaseGone
			}
			// A report about an older session: ignore it.
		}
	}
}

// opened installs a new session's lease and queues every held device (and
// the member key) for writing under it.
func (s *Store) opened(id clientv3.LeaseID) {
	s.mu.Lock()
	s.lease = id
	s.gen++
	for g, h := range s.held {
		h.committed = false
		s.enqueueLocked(g)
	}
	report := s.setStatusLocked(nil)
	s.mu.Unlock()
	if report != nil {
		report()
	}
	s.wake()
}

// lost retires a session's lease: its keys may still be in etcd (a
// restarted etcd resets lease TTLs), so it is revoked once the devices are
// written under the next one.
func (s *Store) lost(id clientv3.LeaseID, why error) {
	s.mu.Lock()
	if s.lease == id {
		s.lease = clientv3.NoLease
	}
	if len(s.oldLeases) < maxOldLeases {
		s.oldLeases = append(s.oldLeases, id)
	}
	report := s.setStatusLocked(why)
	s.mu.Unlock()
	if report != nil {
		report()
	}
}

// renew asks the session loop to drop the session of lease id.
func (s *Store) renew(id clientv3.LeaseID) {
	select {
	case s.renewc <- id:
	default:
	}
}

// watchConn follows the gRPC connection's state, so that Status says
// "unreachable" as soon as the connection fails rather than a TTL later.
func (s *Store) watchConn(ctx context.Context) {
	defer s.wg.Done()
	conn := s.cli.ActiveConnection()
	st := conn.GetState()
	for {
		s.connState(st)
		if !conn.WaitForStateChange(ctx, st) {
			return
		}
		st = conn.GetState()
	}
}

func (s *Store) connState(st connectivity.State) {
	var err error
	s.mu.Lock()
	switch st {
	case connectivity.Ready:
		s.connReady = true
	case connectivity.TransientFailure, connectivity.Shutdown:
		s.connReady = false
		err = fmt.Errorf("etcd unreachable: connection %s", st)
	default:
		// Idle and Connecting come and go on the way to one of the
		// above: no change.
		s.mu.Unlock()
		return
	}
	report := s.setStatusLocked(err)
	s.mu.Unlock()
	if report != nil {
		report()
	}
}
