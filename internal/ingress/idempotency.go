package ingress

import (
	"sync"
	"time"
)

// idempotency remembers, per tenant and Idempotency-Key, the ack of the
// first request for a window, so that a repeat is answered with that ack
// and produces nothing. A repeat that arrives while the first is still
// being produced waits for it. A first request that failed leaves nothing
// behind: its repeat is tried afresh.
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
	order []idemKey // insertion order = expiry order, from head
	head  int
}

type idemKey struct{ tenant, key string }

type idemEntry struct {
	done    chan struct{} // closed when the first request finished
	ack     ack           // set before done is closed
	ok      bool          // set before done is closed
	expires time.Time
}

func newIdempotency(window time.Duration, maxKeys int, now func() time.Time) *idempotency {
	return &idempotency{window: window, max: maxKeys, now: now, m: map[idemKey]*idemEntry{}}
}

// begin returns k's entry. owner is true when the caller created it and
// must call finish; otherwise the caller waits on e.done.
func (s *idempotency) begin(k idemKey) (e *idemEntry, owner bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if e, ok := s.m[k]; ok {
		return e, false
	}
	e = &idemEntry{done: make(chan struct{}), expires: now.Add(s.window)}
	s.m[k] = e
	s.order = append(s.order, k)
	return e, true
}

// finish records the first request's outcome and wakes its repeats.
func (s *idempotency) finish(k idemKey, e *idemEntry, a ack, ok bool) {
	s.mu.Lock()
	e.ack, e.ok = a, ok
	if !ok && s.m[k] == e {
		delete(s.m, k)
	}
	s.mu.Unlock()
	close(e.done)
}

// expire drops entries past their window, and the oldest beyond max.
func (s *idempotency) expire(now time.Time) {
	for s.head < len(s.order) {
		k := s.order[s.head]
		e, ok := s.m[k]
		switch {
		case !ok:
		case now.After(e.expires) || len(s.m) > s.max:
			delete(s.m, k)
		default:
			s.compact()
			return
		}
		s.order[s.head] = idemKey{}
		s.head++
	}
	s.compact()
}

func (s *idempotency) compact() {
	if s.head > 1024 && s.head > len(s.order)/2 {
		s.order = append(s.order[:0:0], s.order[s.head:]...)
		s.head = 0
	}
}

func (s *idempotency) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
