package ingress

import (
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/presence"
	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// TestRateLimitAccuracy drives a tenant's buckets with a simulated clock:
// over a minute of requests every 5 milliseconds, what is admitted is the
// burst plus rate × time, and each refusal's Retry-After is the moment the
// bucket can pay.
func TestRateLimitAccuracy(t *testing.T) {
	tests := []struct {
		name   string
		tenant tenant.Tenant
		tokens int // estimated tokens per request
		want   int // admitted over 60s
	}{
		{"requests", tenant.Tenant{Name: "r", RequestsPerSecond: 50, RequestBurst: 20}, 10, 20 + 50*60},
		{"tokens", tenant.Tenant{Name: "t", TokensPerSecond: 1000, TokenBurst: 5000}, 100, (5000 + 1000*60) / 100},
		{"both, tokens bind", tenant.Tenant{Name: "b", RequestsPerSecond: 100, RequestBurst: 100, TokensPerSecond: 500, TokenBurst: 500}, 50, (500 + 500*60) / 50},
		{"unlimited", tenant.Tenant{Name: "u", RequestBurst: 1, TokenBurst: 1}, 1000, 12000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Unix(0, 0)
			now := start
			l := newLimits(func() time.Time { return now })
			admitted := 0
			var nextOK time.Time
			for i := range 12000 {
				now = start.Add(time.Duration(i) * 5 * time.Millisecond)
				f := l.take(&tt.tenant, tt.tokens)
				if f == nil {
					if now.Before(nextOK) {
						t.Fatalf("admitted at %v, before the Retry-After of an earlier refusal (%v)", now.Sub(start), nextOK.Sub(start))
					}
					admitted++
					continue
				}
				if f.status != http.StatusTooManyRequests || f.retryAfter <= 0 {
					t.Fatalf("refusal = %+v, want 429 with a retry time", f)
				}
				nextOK = now.Add(f.retryAfter - 5*time.Millisecond)
			}
			if diff := admitted - tt.want; diff < -1 || diff > 1 {
				t.Errorf("admitted %d in 60s, want %d ± 1", admitted, tt.want)
			}
		})
	}
}

func TestTokenEstimateOverBurstIsTooLarge(t *testing.T) {
	l := newLimits(time.Now)
	f := l.take(&tenant.Tenant{Name: "x", TokensPerSecond: 10, TokenBurst: 100}, 101)
	if f == nil || f.status != http.StatusRequestEntityTooLarge || f.code != "too_many_tokens" {
		t.Errorf("got %+v, want 413 too_many_tokens", f)
	}
}

// TestRateLimitedOverHTTP shows the 429 with Retry-After on the wire.
func TestRateLimitedOverHTTP(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	ten, _ := in.cfg.Tenants.Authenticate(devKey)
	ten.RequestsPerSecond, ten.RequestBurst = 0.5, 1 // this test's own tenant set
	const body = `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`
	if res, b := do(t, in.Handler(), "POST", "/v1/conversations/c/messages", "application/json", body); res.StatusCode != 202 {
		t.Fatalf("first: %d %s", res.StatusCode, b)
	}
	res, b := do(t, in.Handler(), "POST", "/v1/conversations/c/messages", "application/json", body)
	if e := decodeError(t, b); res.StatusCode != 429 || e.Code != "rate_limited" || res.Header.Get("Retry-After") != "2" {
		t.Errorf("second: %d %s Retry-After %q, want 429 rate_limited with Retry-After 2", res.StatusCode, b, res.Header.Get("Retry-After"))
	}
}

func TestGlobalConcurrencyLimit(t *testing.T) {
	in := newIngress(t, newCluster(t), func(c *Config) { c.MaxInFlight = 1 })
	in.inFlight.tryAcquire() // one request in flight
	res, b := do(t, in.Handler(), "POST", "/v1/conversations/c/messages", "application/json", `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`)
	if e := decodeError(t, b); res.StatusCode != 503 || e.Code != "overloaded" || res.Header.Get("Retry-After") == "" {
		t.Errorf("got %d %s, want 503 overloaded with Retry-After", res.StatusCode, b)
	}
	in.inFlight.release()
	if res, b := do(t, in.Handler(), "POST", "/v1/conversations/c/messages", "application/json", `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`); res.StatusCode != 202 {
		t.Errorf("after release: %d %s", res.StatusCode, b)
	}
}

// TestRateLimitShare: a bucket holding a share of the tenant's limit
// admits that share of the rate and of the burst, counts every request
// that reached it as demand, and takes a new share without losing or
// inventing tokens beyond the new burst.
func TestRateLimitShare(t *testing.T) {
	start := time.Unix(0, 0)
	now := start
	l := newLimits(func() time.Time { return now })
	tn := tenant.Tenant{Name: "s", RequestsPerSecond: 100, RequestBurst: 40, TokensPerSecond: 1e6, TokenBurst: 1e6}
	l.setShares(presence.Shares{Instances: 4, Tenants: map[string]presence.Share{"s": {Requests: 0.25, Tokens: 0.25}}})
	admitted := 0
	for i := range 6000 { // 60 s, a request every 10 ms (100/s offered)
		now = start.Add(time.Duration(i) * 10 * time.Millisecond)
		if l.take(&tn, 10) == nil {
			admitted++
		}
	}
	if want := 10 + 25*60; admitted < want-1 || admitted > want+1 {
		t.Errorf("admitted %d in 60 s with a quarter share, want %d ± 1", admitted, want)
	}
	d := l.collect()["s"]
	if d.Requests != 6000 || d.Tokens != 60000 {
		t.Errorf("demand = %+v, want 6000 requests and 60000 tokens", d)
	}
	if got := l.collect(); len(got) != 0 {
		t.Errorf("second collect = %v, want nothing", got)
	}
	// The whole limit from now on.
	byTenant := l.setShares(presence.Even(1, false))
	if byTenant["s"].Requests != 1 {
		t.Errorf("setShares reports %+v, want the whole limit", byTenant["s"])
	}
	admitted = 0
	base := now
	for i := 1; i <= 1000; i++ { // 10 s more
		now = base.Add(time.Duration(i) * 10 * time.Millisecond)
		if l.take(&tn, 10) == nil {
			admitted++
		}
	}
	if want := 1000; admitted < want-45 || admitted > want { // refills from empty to at most the new burst
		t.Errorf("admitted %d in 10 s with the whole limit, want about %d", admitted, want)
	}
}

// TestRateLimitShareLargeRequest: a small share of the token bucket still
// holds the largest request asked, so such a request is not refused
// forever on this instance.
func TestRateLimitShareLargeRequest(t *testing.T) {
	start := time.Unix(0, 0)
	now := start
	l := newLimits(func() time.Time { return now })
	tn := tenant.Tenant{Name: "big", RequestsPerSecond: 100, RequestBurst: 100, TokensPerSecond: 1000, TokenBurst: 4000}
	l.setShares(presence.Shares{Instances: 2, Tenants: map[string]presence.Share{"big": {Requests: 0.5, Tokens: 0.5}}})
	ok := false
	for i := range 200 { // 20 s
		now = start.Add(time.Duration(i) * 100 * time.Millisecond)
		if l.take(&tn, 3000) == nil {
			ok = true
			break
		}
	}
	if !ok {
		t.Error("a 3000-token request never passed a bucket holding half of a 4000-token burst")
	}
}
