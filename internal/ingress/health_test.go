package ingress

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestHealthProbe: failed pings mark the brokers down and wake waiters; a
// failed ping during which acknowledgements arrived does not; a good ping
// brings them back.
func TestHealthProbe(t *testing.T) {
	var changes []bool
	h := newHealth(func(up bool) { changes = append(changes, up) })
	var fail, ackDuring, slowFail atomic.Bool
	pings := make(chan struct{}, 100)
	ping := func(context.Context) error {
		defer func() { pings <- struct{}{} }()
		if ackDuring.Load() {
			h.acked(time.Now())
		}
		if fail.Load() {
			if slowFail.Load() {
				return context.DeadlineExceeded
			}
			return errors.New("connection refused")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); h.probe(ctx, time.Millisecond, time.Second, ping) }()
	waitPings := func(n int) {
		for range n {
			select {
			case <-pings:
			case <-time.After(10 * time.Second):
				t.Fatal("the prober stopped pinging")
			}
		}
	}
	waitPings(2)
	// Timeouts alone, fewer than slowPingsForDown in a row: still up.
	slowFail.Store(true)
	fail.Store(true)
	waitPings(1)
	fail.Store(false)
	waitPings(2)
	if _, up := h.watch(); !up {
		t.Fatal("marked down after a single slow ping")
	}
	// Many timeouts in a row: down; refused connections below.
	fail.Store(true)
	waitPings(slowPingsForDown + 2)
	if _, up := h.watch(); up {
		t.Fatalf("still up after %d slow pings", slowPingsForDown+1)
	}
	fail.Store(false)
	waitPings(3)
	lost, _ := h.watch()
	slowFail.Store(false)
	fail.Store(true)
	ackDuring.Store(true)
	waitPings(3)
	if _, up := h.watch(); !up {
		t.Fatal("marked down although acknowledgements arrived during the failing pings")
	}
	ackDuring.Store(false)
	waitPings(3)
	select {
	case <-lost:
	default:
		t.Fatal("waiters not woken when the brokers went down")
	}
	if _, up := h.watch(); up {
		t.Fatal("still up after failed pings")
	}
	fail.Store(false)
	waitPings(3)
	cancel()
	<-done
	if _, up := h.watch(); !up {
		t.Fatal("not up again after good pings")
	}
	if want := []bool{false, true, false, true}; !slices.Equal(changes, want) {
		t.Errorf("changes = %v, want %v", changes, want)
	}
}
