package router

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// tenantLimiters holds each tenant's request limiter and token bucket,
// created on first use from the current Tenants settings and rebuilt when
// a reload changes the tenant's limit. A tenant idle for tenantIdle is
// forgotten: both buckets hold one minute's worth and refill in a minute,
// so by then a fresh entry is the same as the old one, and memory holds
// only the tenants seen lately.
type tenantLimiters struct {
	mu        sync.Mutex
	m         map[string]*tenantLimiter
	lastSweep time.Time
}

// tenantIdle is how long a tenant's limiter state outlives its last
// request. It is well past the one-minute refill, so that the reconciling
// of a long request's tokens is rarely lost with its entry.
const tenantIdle = 10 * time.Minute

type tenantLimiter struct {
	limit    Limit
	requests *rate.Limiter // nil: unlimited
	tokens   *tokenBucket  // nil: unlimited
	lastUsed time.Time     // guarded by tenantLimiters.mu
}

func (t *tenantLimiters) get(tenant string, l Limit) *tenantLimiter {
	return t.getAt(tenant, l, time.Now())
}

func (t *tenantLimiters) getAt(tenant string, l Limit, now time.Time) *tenantLimiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*tenantLimiter{}
	}
	if now.Sub(t.lastSweep) >= time.Minute {
		t.lastSweep = now
		for name, tl := range t.m {
			if now.Sub(tl.lastUsed) >= tenantIdle {
				delete(t.m, name)
			}
		}
	}
	tl := t.m[tenant]
	if tl == nil || tl.limit != l {
		tl = &tenantLimiter{limit: l, requests: newRequestLimiter(l.RequestsPerMinute), tokens: newTokenBucket(l.TokensPerMinute)}
		t.m[tenant] = tl
	}
	tl.lastUsed = now
	return tl
}

// size returns how many tenants have limiter state.
func (t *tenantLimiters) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// wait takes one request and estimate tokens from the tenant's limits,
// waiting as long as ctx allows (a request limiter that cannot admit the
// request before ctx's deadline fails at once). The caller reconciles the
// tokens (taken) with the reported usage through tokens.give.
func (tl *tenantLimiter) wait(ctx context.Context, estimate int) error {
	if tl.requests != nil {
		if err := tl.requests.Wait(ctx); err != nil {
			return fmt.Errorf("tenant request limit: %w", err)
		}
	}
	if err := tl.tokens.wait(ctx, estimate); err != nil {
		return fmt.Errorf("tenant token limit: %w", err)
	}
	return nil
}

// taken is how many tokens wait took for estimate.
func (tl *tenantLimiter) taken(estimate int) int {
	if tl.tokens == nil {
		return 0
	}
	return int(min(float64(estimate), tl.tokens.capacity))
}
