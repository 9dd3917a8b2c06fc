package router

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-llm/switchboard/internal/llm"
	"github.com/switchboard-llm/switchboard/internal/modelsim"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// sim is a modelsim instance on loopback that counts its calls.
type sim struct {
	*modelsim.Server
	url  string
	hits atomic.Int64
}

func newSim(t *testing.T, cfg modelsim.Config) *sim {
	t.Helper()
	s, err := modelsim.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	out := &sim{Server: s}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/chat/completions" {
			out.hits.Add(1)
		}
		s.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections() // ends hung handlers
		srv.Close()
	})
	out.url = srv.URL + "/v1"
	return out
}

// testRouter is a Router with only what acquire needs: no Kafka.
func testRouter(t *testing.T, rt Routing) *Router {
	t.Helper()
	bal, err := newBalancer(rt, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Router{bal: bal, metrics: newMetrics(prometheus.NewRegistry()), log: slog.New(slog.DiscardHandler)}
}

// callOnce leases a backend for chain, calls it and releases it.
func callOnce(ctx context.Context, r *Router, chain []string) (string, error) {
	l, err := r.acquire(ctx, chain, 100)
	if err != nil {
		return "", err
	}
	resp, err := l.ep.client.Complete(ctx, llm.ChatRequest{Model: l.model, MaxTokens: 4,
		Messages: []llm.Message{{Role: "user", Content: "hello"}}})
	used := 0
	if resp != nil {
		used = resp.Usage.TotalTokens
	}
	r.bal.release(l, err, used)
	return l.name, err
}

func TestSmoothWeightedRoundRobinOrder(t *testing.T) {
	eps := []*endpoint{{cfg: Backend{Name: "a", Weight: 5}}, {cfg: Backend{Name: "b", Weight: 1}}, {cfg: Backend{Name: "c", Weight: 1}}}
	var got []string
	for range 7 {
		got = append(got, eps[swrr(eps)].cfg.Name)
	}
	// nginx's smooth sequence for 5:1:1 spreads the light backends out.
	if want := "a a b a c a a"; strings.Join(got, " ") != want {
		t.Errorf("order = %v, want %s", got, want)
	}
	// Ties go to the backend with fewer calls in flight.
	tie := []*endpoint{{cfg: Backend{Name: "x", Weight: 1}, inflight: 3}, {cfg: Backend{Name: "y", Weight: 1}, inflight: 1}}
	if got := tie[swrr(tie)].cfg.Name; got != "y" {
		t.Errorf("tie went to %s, want y (fewer in flight)", got)
	}
}

// TestWeightedDistribution: 10,000 real calls over four modelsim
// backends land within ±5 % of each backend's weight share.
func TestWeightedDistribution(t *testing.T) {
	weights := []int{1, 2, 3, 4}
	var sims []*sim
	rt := Routing{}
	for i, w := range weights {
		s := newSim(t, modelsim.Config{MinCompletionTokens: 1, MaxCompletionTokens: 2})
		sims = append(sims, s)
		rt.Backends = append(rt.Backends, Backend{Name: fmt.Sprintf("b%d", i), BaseURL: s.url, Models: []string{"sim"}, Weight: w, MaxConcurrency: 64})
	}
	r := testRouter(t, rt)
	const n, workers = 10000, 16
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= n {
				if _, err := callOnce(t.Context(), r, []string{"sim"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for _, w := range weights {
		total += w
	}
	for i, s := range sims {
		want := float64(n) * float64(weights[i]) / float64(total)
		got := float64(s.hits.Load())
		if math.Abs(got-want) > 0.05*want {
			t.Errorf("backend b%d (weight %d): %v calls, want %v ±5%%", i, weights[i], got, want)
		}
		t.Logf("b%d weight %d: %v calls (%.1f%%, weight share %.1f%%)", i, weights[i], got, 100*got/n, 100*want/n)
	}
}

// TestBreakerOpensProbesAndCloses: failures open a backend's breaker; an
// open breaker keeps calls away; after OpenFor one probe at a time goes
// through; a failed probe reopens it and a good one closes it.
func TestBreakerOpensProbesAndCloses(t *testing.T) {
	bad := newSim(t, modelsim.Config{Models: []string{"a"}, Faults: modelsim.Faults{ErrorRates: map[int]float64{503: 1}}})
	good := newSim(t, modelsim.Config{Models: []string{"b"}})
	r := testRouter(t, Routing{
		Backends: []Backend{{Name: "bad", BaseURL: bad.url, Models: []string{"a"}}, {Name: "good", BaseURL: good.url, Models: []string{"b"}}},
		Breaker:  Breaker{Failures: 3, OpenFor: 100 * time.Millisecond, Probes: 1},
	})
	state := func() float64 { return r.bal.snapshot().endpoints["bad"] }
	for i := range 3 {
		if _, err := callOnce(t.Context(), r, []string{"a"}); err == nil {
			t.Fatalf("call %d succeeded on a backend answering 503", i)
		}
	}
	if state() != stateOpen {
		t.Fatalf("state after 3 failures = %v, want open", state())
	}
	_, err := callOnce(t.Context(), r, []string{"a"})
	if !strings.Contains(fmt.Sprint(err), CodeCircuitOpen) || bad.hits.Load() != 3 {
		t.Fatalf("call on an open breaker: err %v, backend hits %d; want circuit_open and no call", err, bad.hits.Load())
	}
	if r.bal.systemOpen() {
		t.Error("system breaker open while another backend is healthy")
	}
	if s := r.bal.snapshot().services["a"]; s != stateOpen {
		t.Errorf("service a state = %v, want open", s)
	}

	waitState := func(want float64) {
		t.Helper()
		for range 500 {
			if state() == want {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("state = %v, want %v", state(), want)
	}
	// A failed probe opens it again.
	waitState(stateHalfOpen)
	if _, err := callOnce(t.Context(), r, []string{"a"}); err == nil || bad.hits.Load() != 4 {
		t.Fatalf("probe: err %v, hits %d; want a failed call", err, bad.hits.Load())
	}
	if state() != stateOpen {
		t.Fatalf("state after a failed probe = %v, want open", state())
	}

	// Probes are bounded: while one is out, no other call gets through.
	if err := bad.SetFaults(modelsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	waitState(stateHalfOpen)
	probe := r.bal.pick([]string{"a"}, 1)
	if probe.lease == nil {
		t.Fatal("half-open breaker gave no probe")
	}
	if second := r.bal.pick([]string{"a"}, 1); second.lease != nil || second.reason != waitProbe {
		t.Fatalf("second pick while the probe is out = %+v, want none (half_open)", second)
	}
	_, err = probe.lease.ep.client.Complete(t.Context(), llm.ChatRequest{Model: "a", Messages: []llm.Message{{Role: "user", Content: "x"}}})
	r.bal.release(probe.lease, err, 0)
	if err != nil || state() != stateClosed {
		t.Fatalf("probe err %v, state %v; want success and closed", err, state())
	}
	for range 5 {
		if _, err := callOnce(t.Context(), r, []string{"a"}); err != nil {
			t.Fatalf("call after close: %v", err)
		}
	}
}

// TestRetryAfterCoolsBackendDown: a backend that answered 429 with
// Retry-After gets no calls until then; the other backend takes them.
func TestRetryAfterCoolsBackendDown(t *testing.T) {
	limited := newSim(t, modelsim.Config{Faults: modelsim.Faults{ErrorRates: map[int]float64{429: 1}, RetryAfter: time.Hour}})
	other := newSim(t, modelsim.Config{})
	r := testRouter(t, Routing{Backends: []Backend{
		{Name: "limited", BaseURL: limited.url, Models: []string{"sim"}, Weight: 100},
		{Name: "other", BaseURL: other.url, Models: []string{"sim"}},
	}})
	name, err := callOnce(t.Context(), r, []string{"sim"})
	if name != "limited" || llm.RetryAfter(err) != time.Hour {
		t.Fatalf("first call: %s, %v; want limited's 429 with Retry-After 1h", name, err)
	}
	for range 20 {
		if name, err := callOnce(t.Context(), r, []string{"sim"}); name != "other" || err != nil {
			t.Fatalf("call during Retry-After went to %s (%v)", name, err)
		}
	}
	if r.bal.snapshot().endpoints["limited"] != stateClosed {
		t.Error("a 429 counted as a breaker failure")
	}
}

// TestTokenBucketAccuracy counts the tokens a bucket admits over ten
// minutes of fake time: one minute's worth at once, then the rate.
func TestTokenBucketAccuracy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const perMinute, each = 600, 7
		b := newTokenBucket(perMinute)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
		defer cancel()
		admitted := 0
		for b.wait(ctx, each) == nil {
			admitted += each
		}
		want := perMinute + 10*perMinute // the full bucket, then ten minutes of refill
		if admitted < want-each || admitted > want {
			t.Errorf("admitted %d tokens in 10 minutes, want %d (within one take)", admitted, want)
		}
		// Reconciling: tokens given back are admitted again, debts delay.
		b.give(-perMinute)
		if d := b.take(time.Now(), 1); d < 59*time.Second {
			t.Errorf("after a debt of a minute's tokens, the next token waits %v, want about a minute", d)
		}
	})
}

// TestBackendLimitsOverWindow: a backend's requests_per_minute and
// tokens_per_minute admit their share over a window of fake time, and
// reported usage below the estimate is refunded.
func TestBackendLimitsOverWindow(t *testing.T) {
	tests := []struct {
		name      string
		backend   Backend
		used      int // tokens each call reports
		wantCalls int
	}{
		// burst of 60, then 1/s for 120s
		{"requests", Backend{RequestsPerMinute: 60}, 0, 180},
		// 1000 tokens at once, then 1000/min: estimates of 100 admit 10+20
		{"tokens as estimated", Backend{TokensPerMinute: 1000}, 0, 30},
		// each call reports 50 of its 100: twice as many calls
		{"tokens reconciled", Backend{TokensPerMinute: 1000}, 50, 59},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := tt.backend
				b.Name, b.BaseURL, b.Models = "x", "http://127.0.0.1:1/v1", []string{"sim"}
				r := testRouter(t, Routing{Backends: []Backend{b}})
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				defer cancel()
				calls := 0
				for calls < 1000 { // bounded: a limiter that admits too much fails below
					l, err := r.acquire(ctx, []string{"sim"}, 100)
					if err != nil {
						break
					}
					calls++
					r.bal.release(l, nil, tt.used)
				}
				if calls < tt.wantCalls-1 || calls > tt.wantCalls+1 {
					t.Errorf("%d calls admitted in 2 minutes, want %d ±1", calls, tt.wantCalls)
				}
			})
		})
	}
}

// TestTenantLimitWaitsOnlyItsRequest: a tenant over its limit waits (up
// to its deadline) while another tenant goes on.
func TestTenantLimitWaitsOnlyItsRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tl tenantLimiters
		limits := Tenants{Default: Limit{RequestsPerMinute: 60}, Overrides: map[string]Limit{"small": {RequestsPerMinute: 1}}}
		small := tl.get("small", limits.limit("small"))
		if err := small.wait(t.Context(), 10); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := small.wait(ctx, 10); err == nil {
			t.Error("a second request within the minute passed a 1/min limit")
		}
		big := tl.get("big", limits.limit("big"))
		for i := range 60 {
			if err := big.wait(ctx, 10); err != nil {
				t.Fatalf("request %d of tenant big: %v", i, err)
			}
		}
	})
}

func TestEstimateTokens(t *testing.T) {
	req := &pb.Request{MaxTokens: 16, Messages: []*pb.Message{{Content: strings.Repeat("x", 40)}}}
	if got := estimateTokens(req); got != 4+10+16 {
		t.Errorf("estimate = %d, want 30", got)
	}
	req.MaxTokens = 0
	if got := estimateTokens(req); got != 14+DefaultCompletionEstimate {
		t.Errorf("estimate without max_tokens = %d", got)
	}
}

// TestConcurrencyLimitQueuesAndWakes: requests beyond a backend's
// max_concurrency wait, never more than the limit run at once, and a
// finished call wakes the next waiter at once (in fake time: lost
// wake-ups would show as the one-second fallback timer).
func TestConcurrencyLimitQueuesAndWakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := testRouter(t, Routing{Backends: []Backend{{Name: "x", BaseURL: "http://127.0.0.1:1/v1", Models: []string{"sim"}, MaxConcurrency: 2}}})
		var running, most atomic.Int64
		start := time.Now()
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				l, err := r.acquire(t.Context(), []string{"sim"}, 1)
				if err != nil {
					t.Error(err)
					return
				}
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(10 * time.Millisecond)
				running.Add(-1)
				r.bal.release(l, nil, 0)
			})
		}
		wg.Wait()
		if most.Load() != 2 {
			t.Errorf("at most %d calls ran at once, want 2", most.Load())
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Errorf("20 calls of 10ms, 2 at a time, took %v of fake time, want 100ms (a waiter was not woken)", d)
		}
	})
}

// TestKeepAlivePoolSizedToConcurrency: many calls from many goroutines
// reuse at most max_concurrency connections to the backend.
func TestKeepAlivePoolSizedToConcurrency(t *testing.T) {
	s, err := modelsim.New(modelsim.Config{BaseLatency: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	r := testRouter(t, Routing{Backends: []Backend{{Name: "x", BaseURL: srv.URL + "/v1", Models: []string{"sim"}, MaxConcurrency: 4}}})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 25 {
				if _, err := callOnce(t.Context(), r, []string{"sim"}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := conns.Load(); got < 1 || got > 4 {
		t.Errorf("400 calls opened %d connections, want 1 to 4 (max_concurrency, kept alive)", got)
	}
}

// TestTenantLimitersForgetIdleTenants: state of a tenant idle for
// tenantIdle is dropped, so memory holds only recent tenants; a tenant in
// use keeps its state (and so its spent tokens).
func TestTenantLimitersForgetIdleTenants(t *testing.T) {
	var tl tenantLimiters
	l := Limit{RequestsPerMinute: 60}
	start := time.Now()
	for i := range 1000 {
		tl.getAt(fmt.Sprintf("t%d", i), l, start)
	}
	busy := tl.getAt("busy", l, start)
	if got := tl.size(); got != 1001 {
		t.Fatalf("%d tenants with state, want 1001", got)
	}
	for m := 1; m <= 11; m++ { // "busy" sends a request every minute
		if got := tl.getAt("busy", l, start.Add(time.Duration(m)*time.Minute)); got != busy {
			t.Fatalf("minute %d: busy's limiter state was replaced", m)
		}
	}
	if got := tl.size(); got != 1 {
		t.Errorf("after 11 minutes, %d tenants with state, want 1 (only the busy one)", got)
	}
}
