package ingress

import (
	"container/list"
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
	order *list.List // of *idemEntry, in insertion order = expiry order
}

type idemKey struct{ tenant, key string }

type idemEntry struct {
	key      idemKey
	elem     *list.Element // in idempotency.order
	done     chan struct{} // closed when the first request finished
	ack      ack           // set before done is closed
	ok       bool          // set before done is closed
	finished bool          // guarded by idempotency.mu
	expires  time.Time
}

func newIdempotency(window time.Duration, maxKeys int, now func() time.Time) *idempotency {
	return &idempotency{window: window, max: maxKeys, now: now, m: map[idemKey]*idemEntry{}, order: list.New()}
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
	e = &idemEntry{key: k, done: make(chan struct{}), expires: now.Add(s.window)}
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
