package ingress

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/switchboard-llm/switchboard/internal/presence"
	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// limits holds each tenant's two token buckets: requests, and estimated
// tokens (see estimateTokens). A request takes from both or from neither.
// With several instances, each holds a share of every tenant's limit (see
// package presence and shared.go): its buckets fill at the tenant's rate
// times its share and hold its burst times its share.
//
// Lock order: limits.mu, then a buckets' mu.
type limits struct {
	now    func() time.Time
	mu     sync.Mutex
	by     map[string]*buckets // by tenant name
	shares presence.Shares     // this instance's shares; the zero value holds every limit whole
}

type buckets struct {
	mu               sync.Mutex // makes checking both and taking from both one step
	requests, tokens *rate.Limiter
	of               tenant.Tenant  // the rates they were made with
	share            presence.Share // the share of of's limits they hold
	// asked counts the requests and estimated tokens that reached the
	// check since the last collect, refused ones included: the demand
	// this instance publishes.
	askedRequests, askedTokens float64
	// largestAsk is the largest token estimate seen (at most the tenant's
	// token burst): a small share's token bucket still holds that much,
	// or such a request could never pass here.
	largestAsk int
}

// sameRates reports whether a and b have the same limits.
func sameRates(a, b *tenant.Tenant) bool {
	return a.RequestsPerSecond == b.RequestsPerSecond && a.RequestBurst == b.RequestBurst &&
		a.TokensPerSecond == b.TokensPerSecond && a.TokenBurst == b.TokenBurst
}

func newLimits(now func() time.Time) *limits {
	return &limits{now: now, by: map[string]*buckets{}}
}

func limitOf(perSecond, share float64) rate.Limit {
	if perSecond == 0 {
		return rate.Inf
	}
	return rate.Limit(perSecond * share)
}

// burstOf is a share of burst, at least floor and at least 2 (or burst
// when smaller): a bucket of 1 wastes what refills while it is full,
// waiting for the next request, up to a sixth of a small share's rate.
func burstOf(burst int, share float64, floor int) int {
	if share >= 1 {
		return burst
	}
	return max(min(2, burst), floor, int(math.Ceil(float64(burst)*share)))
}

// set makes b's buckets hold share of t's limits from now on; they keep
// what they hold, up to their new bursts. b.mu is held.
func (b *buckets) set(now time.Time, t *tenant.Tenant, share presence.Share) {
	b.requests.SetLimitAt(now, limitOf(t.RequestsPerSecond, share.Requests))
	b.requests.SetBurstAt(now, burstOf(t.RequestBurst, share.Requests, 1))
	b.tokens.SetLimitAt(now, limitOf(t.TokensPerSecond, share.Tokens))
	b.tokens.SetBurstAt(now, burstOf(t.TokenBurst, share.Tokens, min(b.largestAsk, t.TokenBurst)))
	b.of, b.share = *t, share
}

func (l *limits) bucketsOf(t *tenant.Tenant) *buckets {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.by[t.Name]
	switch {
	case !ok:
		share := l.shares.Of(t.Name)
		b = &buckets{
			requests: rate.NewLimiter(limitOf(t.RequestsPerSecond, share.Requests), burstOf(t.RequestBurst, share.Requests, 1)),
			tokens:   rate.NewLimiter(limitOf(t.TokensPerSecond, share.Tokens), burstOf(t.TokenBurst, share.Tokens, 1)),
			of:       *t,
			share:    share,
		}
		l.by[t.Name] = b
	case !sameRates(&b.of, t):
		// A reloaded tenants file changed the tenant's rates: the buckets
		// keep what they hold (up to the new bursts) and fill at the new
		// rates from now on.
		b.mu.Lock()
		b.set(l.now(), t, b.share)
		b.mu.Unlock()
	}
	return b
}

// setShares gives every tenant's buckets this instance's new share, and
// returns the shares of the tenants that have buckets here.
func (l *limits) setShares(s presence.Shares) map[string]presence.Share {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.shares = s
	now := l.now()
	out := make(map[string]presence.Share, len(l.by))
	for name, b := range l.by {
		sh := s.Of(name)
		b.mu.Lock()
		if sh != b.share {
			b.set(now, &b.of, sh)
		}
		b.mu.Unlock()
		out[name] = sh
	}
	return out
}

// collect returns the demand counted since its last call, by tenant, and
// starts counting anew.
func (l *limits) collect() map[string]presence.Demand {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]presence.Demand{}
	for name, b := range l.by {
		b.mu.Lock()
		if b.askedRequests > 0 {
			out[name] = presence.Demand{Requests: b.askedRequests, Tokens: b.askedTokens}
			b.askedRequests, b.askedTokens = 0, 0
		}
		b.mu.Unlock()
	}
	return out
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
	b.askedRequests++
	b.askedTokens += float64(tokens)
	if tokens > b.largestAsk && tokens <= t.TokenBurst {
		b.largestAsk = tokens
		if b.share.Tokens < 1 && b.tokens.Burst() < tokens {
			b.tokens.SetBurstAt(now, tokens)
		}
	}
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
