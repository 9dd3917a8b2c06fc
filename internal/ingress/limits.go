package ingress

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// limits holds each tenant's two token buckets: requests, and estimated
// tokens (see estimateTokens). A request takes from both or from neither.
type limits struct {
	now func() time.Time
	mu  sync.Mutex
	by  map[string]*buckets // by tenant name
}

type buckets struct {
	mu               sync.Mutex // makes checking both and taking from both one step
	requests, tokens *rate.Limiter
	of               tenant.Tenant // the rates they were made with
}

// sameRates reports whether a and b have the same limits.
func sameRates(a, b *tenant.Tenant) bool {
	return a.RequestsPerSecond == b.RequestsPerSecond && a.RequestBurst == b.RequestBurst &&
		a.TokensPerSecond == b.TokensPerSecond && a.TokenBurst == b.TokenBurst
}

func newLimits(now func() time.Time) *limits {
	return &limits{now: now, by: map[string]*buckets{}}
}

func limitOf(perSecond float64) rate.Limit {
	if perSecond == 0 {
		return rate.Inf
	}
	return rate.Limit(perSecond)
}

func (l *limits) bucketsOf(t *tenant.Tenant) *buckets {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.by[t.Name]
	switch {
	case !ok:
		b = &buckets{
			requests: rate.NewLimiter(limitOf(t.RequestsPerSecond), t.RequestBurst),
			tokens:   rate.NewLimiter(limitOf(t.TokensPerSecond), t.TokenBurst),
			of:       *t,
		}
		l.by[t.Name] = b
	case !sameRates(&b.of, t):
		// A reloaded tenants file changed the tenant's rates: the buckets
		// keep what they hold (up to the new bursts) and fill at the new
		// rates from now on.
		b.mu.Lock()
		now := l.now()
		b.requests.SetLimitAt(now, limitOf(t.RequestsPerSecond))
		b.requests.SetBurstAt(now, t.RequestBurst)
		b.tokens.SetLimitAt(now, limitOf(t.TokensPerSecond))
		b.tokens.SetBurstAt(now, t.TokenBurst)
		b.of = *t
		b.mu.Unlock()
	}
	return b
}

// take takes one request and tokens estimated tokens from t's buckets, or
// returns a 429 saying when both will hold enough.
func (l *limits) take(t *tenant.Tenant, tokens int) *failure {
	b := l.bucketsOf(t)
	if t.TokensPerSecond > 0 && tokens > t.TokenBurst {
		return &failure{status: http.StatusRequestEntityTooLarge, code: "too_many_tokens", field: "max_tokens",
			message: fmt.Sprintf("the request is estimated at %d tokens; tenant %q may send at most %d at once", tokens, t.Name, t.TokenBurst)}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := l.now()
	// Look first, take only when both can pay: reserving and cancelling
	// would lose tokens when concurrent refusals cancel out of order.
	if wait := max(delayFor(b.requests, now, 1), delayFor(b.tokens, now, tokens)); wait > 0 {
		return &failure{status: http.StatusTooManyRequests, code: "rate_limited", retryAfter: wait,
			message: fmt.Sprintf("tenant %q is over its rate limit; retry in %v", t.Name, wait.Round(time.Millisecond))}
	}
	b.requests.AllowN(now, 1)
	b.tokens.AllowN(now, tokens)
	return nil
}

// delayFor is how long until lim holds n tokens (0: it does now).
func delayFor(lim *rate.Limiter, now time.Time, n int) time.Duration {
	if lim.Limit() == rate.Inf {
		return 0
	}
	missing := float64(n) - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(missing / float64(lim.Limit()) * float64(time.Second))
}

// semaphore bounds the requests being produced at once, across protocols.
type semaphore chan struct{}

func (s semaphore) tryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s semaphore) release() { <-s }
