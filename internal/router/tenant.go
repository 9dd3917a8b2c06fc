package router

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/time/rate"
)

// tenantLimiters holds each tenant's request limiter and token bucket,
// created on first use from the current Tenants settings and rebuilt when
// a reload changes the tenant's limit. Entries are never removed: there is
// one per tenant seen since start.
type tenantLimiters struct {
	mu sync.Mutex
	m  map[string]*tenantLimiter
}

type tenantLimiter struct {
	limit    Limit
	requests *rate.Limiter // nil: unlimited
	tokens   *tokenBucket  // nil: unlimited
}

func (t *tenantLimiters) get(tenant string, l Limit) *tenantLimiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*tenantLimiter{}
	}
	tl := t.m[tenant]
	if tl == nil || tl.limit != l {
		tl = &tenantLimiter{limit: l, requests: newRequestLimiter(l.RequestsPerMinute), tokens: newTokenBucket(l.TokensPerMinute)}
		t.m[tenant] = tl
	}
	return tl
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
