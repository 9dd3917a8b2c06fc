package ingress

import (
	"sync"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// TestConcurrentRefusalsKeepTheBucket: refusals must take nothing. (Found
// in review: refusals reserved and cancelled, concurrent cancels came out
// of order, x/time/rate does not restore a reservation cancelled while a
// later one is outstanding, and a tenant bursting over its limit locked
// itself out for 30-55 s.) After a full second at 10 req/s (burst 10),
// 10 requests are admitted again.
func TestConcurrentRefusalsKeepTheBucket(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := newLimits(clock)
	tn := &tenant.Tenant{Name: "x", RequestsPerSecond: 10, RequestBurst: 10, TokenBurst: 1}
	for range 10 {
		if f := l.take(tn, 1); f != nil {
			t.Fatal("burst refused")
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				if f := l.take(tn, 1); f == nil {
					t.Error("admitted over the limit")
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	now = now.Add(time.Second) // the bucket should hold 10 again
	mu.Unlock()
	admitted := 0
	var ra time.Duration
	for range 10 {
		if f := l.take(tn, 1); f == nil {
			admitted++
		} else {
			ra = f.retryAfter
		}
	}
	if admitted != 10 {
		t.Fatalf("after 1s at 10/s with the bucket empty, %d of 10 admitted (last Retry-After %v); refusals have drained the bucket", admitted, ra)
	}
}
