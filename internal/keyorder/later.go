package keyorder

import (
	"errors"
	"fmt"
	"time"
)

// laterError is what Later returns.
type laterError struct{ after time.Duration }

func (l *laterError) Error() string {
	return fmt.Sprintf("keyorder: the record's work cannot start now; again in %v", l.after)
}

// Later is the error a Handler returns when its record's work cannot start
// yet because of something outside the engine (for egress webhooks: the
// receiver already has its share of deliveries in flight), and waiting for
// it should not hold a place in the in-flight budget. The record gives its
// place back at once, so other keys' records start; it stays first of its
// key, which starts nothing else meanwhile (order holds), and unfinished
// (its offset is not committed); after d it is queued again and the
// Handler called anew. It is not a failure: no retry is counted and no
// backoff grows. A record of a partition that is revoked or lost meanwhile
// is left for the partition's next owner, like any unfinished one.
func Later(d time.Duration) error { return &laterError{after: max(d, time.Millisecond)} }

// later reports whether err is Later's, and its wait.
func later(err error) (time.Duration, bool) {
	var l *laterError
	if errors.As(err, &l) {
		return l.after, true
	}
	return 0, false
}

// postpone gives back the in-flight place of c's record it, which the
// Handler answered with Later(d), and queues the record again, first of
// its key, after d. c stays busy meanwhile, so no later record of its key
// starts.
func (e *Engine) postpone(c *conv, it item, d time.Duration) {
	e.mu.Lock()
	p := c.p
	p.inflight--
	p.lane.inflight--
	e.inflight--
	e.m.inflight.WithLabelValues(p.lane.topic).Dec()
	if p.closing && p.inflight == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
	e.dispatch()
	e.mu.Unlock()
	time.AfterFunc(d, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		// A released partition (revoked, lost, stopping) dropped its queues:
		// the record is left for the next owner, and nothing may start after
		// Run has waited for its handlers.
		if p.closing {
			return
		}
		c.busy = false
		c.queue = append([]item{it}, c.queue...)
		if !c.queued {
			e.makeReady(c)
		}
		e.dispatch()
	})
}
