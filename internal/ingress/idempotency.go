package ingress

import (
	"container/list"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// idempotency remembers, per tenant and Idempotency-Key, the ack of the
// first request for a window, so that a repeat is answered with that ack
// and produces nothing. A repeat that arrives while the first is still
// being produced waits for it. A first request that failed leaves nothing
// behind: its repeat is tried afresh. A repeat must be the same request:
// the same key with another body or conversation is refused with 422
// (idempotency_key_reused), so a new message is never dropped silently.
//
// The memory is this instance's. Across instances, the request ID derived
// from the key (RequestIDForKey) makes a repeat's record carry the same
// request_id, which readers drop as a duplicate.
type idempotency struct {
	window time.Duration
	max    int
	now    func() time.Time

	mu    sync.Mutex
	m     map[idemKey]*idemEntry
	order *list.List // of *idemEntry, in insertion order = expiry order
}

type idemKey struct{ tenant, key string }

type idemEntry struct {
	key      idemKey
	digest   [sha256.Size]byte // of the first request: a repeat must match it
	elem     *list.Element     // in idempotency.order
	done     chan struct{}     // closed when the first request finished
	ack      ack               // set before done is closed
	ok       bool              // set before done is closed
	finished bool              // guarded by idempotency.mu
	expires  time.Time
}

func newIdempotency(window time.Duration, maxKeys int, now func() time.Time) *idempotency {
	return &idempotency{window: window, max: maxKeys, now: now, m: map[idemKey]*idemEntry{}, order: list.New()}
}

// claim returns k's entry for a request with the given digest. owner is
// true when the caller created it and must call finish. Otherwise the
// request is a repeat and e.ack is the first request's ack: a repeat that
// arrives while the first is in flight waits for it (until ctx ends), and
// one whose first attempt failed tries again as owner. The same key with
// another digest is refused.
func (s *idempotency) claim(ctx context.Context, k idemKey, digest [sha256.Size]byte) (e *idemEntry, owner bool, f *failure) {
	for range 3 {
		e, owner := s.begin(k, digest)
		if owner {
			return e, true, nil
		}
		if e.digest != digest {
			return nil, false, &failure{status: http.StatusUnprocessableEntity, code: "idempotency_key_reused", field: "idempotency_key",
				message: fmt.Sprintf("this Idempotency-Key was used within the last %s for another request (another body or conversation); "+
					"use a new key for new work", s.window)}
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return nil, false, &failure{status: http.StatusServiceUnavailable, code: "unavailable", retryAfter: time.Second,
				message: "gave up waiting for the first request with this Idempotency-Key"}
		}
		if e.ok {
			return e, false, nil
		}
		// The first attempt failed: its entry is gone; try again as owner.
	}
	return nil, false, &failure{status: http.StatusConflict, code: "idempotency_conflict", retryAfter: time.Second,
		message: "requests with this Idempotency-Key keep failing concurrently; retry later"}
}

// begin returns k's entry. owner is true when the caller created it (with
// digest) and must call finish; otherwise the caller waits on e.done.
func (s *idempotency) begin(k idemKey, digest [sha256.Size]byte) (e *idemEntry, owner bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if e, ok := s.m[k]; ok {
		return e, false
	}
	e = &idemEntry{key: k, digest: digest, done: make(chan struct{}), expires: now.Add(s.window)}
	e.elem = s.order.PushBack(e)
	s.m[k] = e
	return e, true
}

// finish records the first request's outcome and wakes its repeats. A
// failed first request leaves nothing behind.
func (s *idempotency) finish(k idemKey, e *idemEntry, a ack, ok bool) {
	s.mu.Lock()
	e.ack, e.ok, e.finished = a, ok, true
	if !ok && s.m[k] == e {
		s.drop(e)
	}
	s.mu.Unlock()
	close(e.done)
}

// expire drops entries past their window, and the oldest finished ones
// beyond max (one still being produced stays, so its repeats wait for it;
// those are bounded by the in-flight limit).
func (s *idempotency) expire(now time.Time) {
	for el := s.order.Front(); el != nil; el = s.order.Front() {
		e := el.Value.(*idemEntry)
		if !now.After(e.expires) && (len(s.m) <= s.max || !e.finished) {
			return
		}
		s.drop(e)
	}
}

func (s *idempotency) drop(e *idemEntry) {
	s.order.Remove(e.elem)
	if s.m[e.key] == e {
		delete(s.m, e.key)
	}
}

func (s *idempotency) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
