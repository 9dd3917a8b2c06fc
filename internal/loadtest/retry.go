package loadtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Retry is how the load test resends a request that was refused for a
// passing reason, as the README tells clients to: a 429 or 503 (HTTP and
// OpenAI drivers; the same statuses in a WebSocket or gRPC refusal), or a
// connection that was refused or broke (ingress down or restarting). The
// resend is the same request: same body, same loadtest ID and the same
// Idempotency-Key (every request carries one: its loadtest ID), so ingress
// answers a repeat of a request it already accepted with the first ack and
// produces nothing new. A request answered twice all the same (ingress
// accepted both attempts, e.g. on two instances) is a real duplicate and
// the ledger counts it.
//
// A resend waits for the refusal's Retry-After (or retry_after_ms), plus
// up to a fifth more as jitter so that refused clients do not come back
// together; without one (a broken connection, a refusal that does not
// say) it backs off exponentially from Base, with full jitter over the
// upper half. Each wait is at most MaxWait. A request is resent at most
// Max times, and not when the resend would come more than Budget after its
// intended send time. Latency still counts from the intended send time of
// the first attempt (open loop: the wait is the client's delay).
//
// The resends of a request hold its conversation, as a client that follows
// the README's order rule does (a refused message is retried before the
// conversation's next one is sent). Loads sent in calls (Load.PerCall) are
// not resent: a call's refused messages would have to be sent again as a
// call of their own.
type Retry struct {
	// Max is the most resends of one request; 0 sends each request once.
	Max int
	// Budget bounds the time from a request's intended send time to its
	// last resend. Default 30s.
	Budget time.Duration
	// Base is the first back-off when the entry point gives no
	// Retry-After; it doubles with each resend. Default 250ms.
	Base time.Duration
	// MaxWait caps one wait, Retry-After included. Default 10s.
	MaxWait time.Duration
}

// Retry defaults.
const (
	DefaultRetryBudget  = 30 * time.Second
	DefaultRetryBase    = 250 * time.Millisecond
	DefaultRetryMaxWait = 10 * time.Second
)

func (p *Retry) defaults() {
	if p.Budget == 0 {
		p.Budget = DefaultRetryBudget
	}
	if p.Base == 0 {
		p.Base = DefaultRetryBase
	}
	if p.MaxWait == 0 {
		p.MaxWait = DefaultRetryMaxWait
	}
}

// retryable reports whether err is worth a resend of the same request, and
// the wait the entry point asked for (zero: it did not say).
func retryable(err error) (time.Duration, bool) {
	var se *SendError
	if !errors.As(err, &se) {
		return 0, false
	}
	switch {
	case se.Status == http.StatusTooManyRequests, se.Status == http.StatusServiceUnavailable:
		return se.RetryAfter, true
	case se.Code == "connect_refused", se.Code == "connection_reset", strings.HasPrefix(se.Code, "grpc_unavailable"):
		return se.RetryAfter, true
	}
	return 0, false
}

// wait returns how long to wait before resend n+1 (n resends so far) of a
// request meant for intended that failed with err at now, or false when it
// is not to be resent.
func (p Retry) wait(err error, n int, intended, now time.Time) (time.Duration, bool) {
	if n >= p.Max {
		return 0, false
	}
	after, ok := retryable(err)
	if !ok {
		return 0, false
	}
	var d time.Duration
	if after > 0 {
		d = after + rand.N(after/5+1)
	} else {
		back := p.Base << min(n, 20)
		if back <= 0 || back > p.MaxWait {
			back = p.MaxWait
		}
		d = back/2 + rand.N(back/2+1)
	}
	d = min(d, p.MaxWait)
	if now.Add(d).Sub(intended) > p.Budget {
		return 0, false
	}
	return d, true
}

// send calls send until it succeeds or the policy stops resending; before
// each resend it waits and calls resent with the error it answers. It
// returns the last attempt's error.
func (p Retry) send(ctx context.Context, intended time.Time, send func() error, resent func(error)) error {
	err := send()
	for n := 0; err != nil; n++ {
		d, ok := p.wait(err, n, intended, time.Now())
		if !ok || !sleepFor(ctx, d) {
			return err
		}
		resent(err)
		err = send()
	}
	return nil
}

func sleepFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retryAfterHeader is an HTTP answer's Retry-After: seconds, or a date;
// zero when absent or unreadable.
func retryAfterHeader(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(min(max(0, s), 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}
