package ingress

import (
	"fmt"
	"testing"
	"time"
)

// TestIdempotencyMemoryIsBounded: failed first attempts (429, 503) leave
// nothing behind, and finished keys beyond the maximum are dropped oldest
// first. (Found in review: failed attempts piled up in the expiry order
// behind one live key for the whole window, however small the maximum.)
func TestIdempotencyMemoryIsBounded(t *testing.T) {
	now := time.Unix(0, 0)
	s := newIdempotency(10*time.Minute, 100, func() time.Time { return now })
	k := idemKey{"t", "live"}
	e, _ := s.begin(k, [32]byte{})
	s.finish(k, e, ack{RequestID: "x"}, true)
	for i := range 100_000 {
		now = now.Add(time.Millisecond) // 1,000 failing requests/s for 100 s
		k := idemKey{"t", fmt.Sprintf("retry-%d", i)}
		e, _ := s.begin(k, [32]byte{})
		s.finish(k, e, ack{}, false) // rate limited: nothing remembered
	}
	if s.len() != 1 || s.order.Len() != 1 {
		t.Fatalf("after 100,000 failed attempts: %d keys remembered, %d in the expiry order; want 1 and 1", s.len(), s.order.Len())
	}
	for i := range 1000 {
		k := idemKey{"t", fmt.Sprintf("ok-%d", i)}
		e, _ := s.begin(k, [32]byte{})
		s.finish(k, e, ack{RequestID: k.key}, true)
	}
	if s.len() > s.max+1 || s.order.Len() != s.len() {
		t.Fatalf("after 1,000 successes: %d keys, %d in order; want at most %d, equal", s.len(), s.order.Len(), s.max+1)
	}
	// An entry still being produced is not dropped for the maximum: its
	// repeats must wait for it, not produce again.
	inflight := idemKey{"t", "inflight"}
	first, _ := s.begin(inflight, [32]byte{})
	for i := range 200 {
		k := idemKey{"t", fmt.Sprintf("more-%d", i)}
		e, _ := s.begin(k, [32]byte{})
		s.finish(k, e, ack{RequestID: k.key}, true)
	}
	if e, owner := s.begin(inflight, [32]byte{}); owner || e != first {
		t.Fatal("an entry still in flight was dropped for the maximum")
	}
	now = now.Add(11 * time.Minute)
	s.begin(idemKey{"t", "late"}, [32]byte{})
	if s.len() != 1 {
		t.Errorf("after the window: %d keys remembered, want 1 (the new one)", s.len())
	}
}
