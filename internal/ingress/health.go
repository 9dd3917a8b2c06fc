package ingress

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// health tracks whether the brokers answer. A prober (Run) pings them every
// ProbeInterval; while they do not answer, requests get a 503 at once
// instead of waiting for ProduceTimeout, and requests already waiting for
// an acknowledgement are answered 503 when the probe fails. A ping that
// fails while produce acknowledgements keep arriving does not count (the
// brokers are evidently reachable), nor do fewer than slowPingsForDown
// timeouts in a row (a busy machine answers pings late).
type health struct {
	lastAck atomic.Int64 // unix nanoseconds of the latest produce acknowledgement

	mu   sync.Mutex
	up   bool
	lost chan struct{} // closed when up turns false; replaced when it turns true
	// onChange observes transitions (a metric).
	onChange func(up bool)
}

func newHealth(onChange func(bool)) *health {
	return &health{up: true, lost: make(chan struct{}), onChange: onChange}
}

// watch returns a channel closed when the brokers are found unreachable,
// and whether they are reachable now.
func (h *health) watch() (lost <-chan struct{}, up bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lost, h.up
}

func (h *health) set(up bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if up == h.up {
		return
	}
	h.up = up
	if up {
		h.lost = make(chan struct{})
	} else {
		close(h.lost)
	}
	h.onChange(up)
}

// acked records a produce acknowledgement.
func (h *health) acked(now time.Time) { h.lastAck.Store(now.UnixNano()) }

// slowPingsForDown is how many consecutive pings must time out (with no
// acknowledgement meanwhile) before the brokers count as unreachable. A
// refused or reset connection counts at once; a timeout may only mean this
// machine is too busy to answer within the ping's timeout.
const slowPingsForDown = 3

// probe pings every interval until ctx is done.
func (h *health) probe(ctx context.Context, interval, timeout time.Duration, ping func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	slow := 0
	for {
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil || h.lastAck.Load() >= start.UnixNano():
			slow = 0
			h.set(true)
		case errors.Is(err, context.DeadlineExceeded):
			if slow++; slow >= slowPingsForDown {
				h.set(false)
			}
		default:
			slow = 0
			h.set(false)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
