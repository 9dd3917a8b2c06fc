package router

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/modelsim"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// These tests run the whole router (Kafka on kfake) against modelsim
// instances on loopback.

// checkAllFinal fails unless res holds exactly one final result for each
// of ids, in order per conversation, and nothing else terminal.
func checkAllFinal(t *testing.T, res []*pb.Result, ids []string) {
	t.Helper()
	seen := map[string]int{}
	last := map[string]string{}
	for _, r := range res {
		if r.GetChunk() != nil {
			continue
		}
		if r.GetFinal() == nil {
			t.Errorf("%s: %v, want a final result", r.GetRequestId(), r)
		}
		seen[r.GetRequestId()]++
		if prev := last[r.GetConversationId()]; prev != "" && requestIndex(prev) > requestIndex(r.GetRequestId()) {
			t.Errorf("conversation %s: %s after %s", r.GetConversationId(), r.GetRequestId(), prev)
		}
		last[r.GetConversationId()] = r.GetRequestId()
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("%s: %d terminal results, want 1", id, seen[id])
		}
	}
	if len(seen) != len(ids) {
		t.Errorf("%d requests answered, want %d", len(seen), len(ids))
	}
}

// requestIndex is i of a request ID "conversation-i".
func requestIndex(id string) int {
	i, _ := strconv.Atoi(id[strings.LastIndex(id, "-")+1:])
	return i
}

// noDeadLetters polls the dead-letter topic briefly and fails on any.
func (h *harness) noDeadLetters(wait time.Duration) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), wait)
	defer cancel()
	for ctx.Err() == nil {
		h.client.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			if rec.Topic == deadletter {
				var dl pb.DeadLetter
				_ = proto.Unmarshal(rec.Value, &dl)
				h.t.Errorf("dead letter: %v", &dl)
			}
		})
	}
}

// TestFallbackToAnotherModel: a model's pool whose only backend fails
// opens its breaker and the request goes on to the fallback model in the
// same handler, its attempt counting up; later requests go straight there.
func TestFallbackToAnotherModel(t *testing.T) {
	h := newHarness(t)
	big := newSim(t, modelsim.Config{Models: []string{"big"}, Faults: modelsim.Faults{ErrorRates: map[int]float64{502: 1}}})
	small := newSim(t, modelsim.Config{Models: []string{"small"}})
	h.run(big.url, func(c *Config) {
		c.MaxAttempts = 3
		c.Routing = Routing{
			Backends: []Backend{
				{Name: "big", BaseURL: big.url, Models: []string{"big"}},
				{Name: "small", BaseURL: small.url, Models: []string{"small"}},
			},
			Aliases:   map[string]string{"large": "big"},
			Fallbacks: map[string][]string{"big": {"small"}},
			Breaker:   Breaker{Failures: 2, OpenFor: time.Minute},
		}
	})
	var ids []string
	for i := range 5 {
		req := request("f", i, i%2 == 1)
		req.Model = "large" // an alias of big
		h.produce(req)
		ids = append(ids, req.GetRequestId())
	}
	res, _ := h.collect(5)
	checkAllFinal(t, res, ids)
	for _, r := range res {
		if r.GetFinal() == nil {
			continue
		}
		wantAttempt := int32(1)
		if r.GetRequestId() == "f-0" {
			wantAttempt = 3 // two failures on big opened its breaker; the third went to small
		}
		if r.GetFinal().GetBackend() != "small" || r.GetAttempt() != wantAttempt {
			t.Errorf("%s: backend %s attempt %d, want small attempt %d", r.GetRequestId(), r.GetFinal().GetBackend(), r.GetAttempt(), wantAttempt)
		}
	}
	if got := big.hits.Load(); got != 2 {
		t.Errorf("big called %d times, want 2 (then its breaker is open)", got)
	}
}

// TestRetryAfterHonoured: after a 429 with Retry-After the retry waits at
// least that long, and its results carry attempt 2.
func TestRetryAfterHonoured(t *testing.T) {
	const retryAfter = 400 * time.Millisecond
	h := newHarness(t)
	s, err := modelsim.New(modelsim.Config{Faults: modelsim.Faults{ErrorRates: map[int]float64{429: 1}, RetryAfter: retryAfter}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var calls []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls = append(calls, time.Now())
		mu.Unlock()
		s.Handler().ServeHTTP(w, r)
		_ = s.SetFaults(modelsim.Faults{}) // only the first call is refused
	}))
	t.Cleanup(srv.Close)
	h.run(srv.URL+"/v1", func(c *Config) { c.RetryBackoff = time.Millisecond })
	h.produce(request("ra", 0, true))
	res, _ := h.collect(1)
	checkAllFinal(t, res, []string{"ra-0"})
	for _, r := range res {
		if r.GetAttempt() != 2 {
			t.Errorf("result %v: attempt %d, want 2", r.GetBody(), r.GetAttempt())
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	if gap := calls[1].Sub(calls[0]); gap < retryAfter {
		t.Errorf("retry came %v after the 429, before its Retry-After of %v", gap, retryAfter)
	}
}

// TestDeadlineHonoured: a request's deadline cuts a hung call and stops
// retries that could not start before it; the result is a
// deadline_exceeded error and nothing is dead-lettered.
func TestDeadlineHonoured(t *testing.T) {
	tests := []struct {
		name   string
		faults modelsim.Faults
	}{
		{"hung backend", modelsim.Faults{HangFraction: 1}},
		{"retry-after beyond the deadline", modelsim.Faults{ErrorRates: map[int]float64{503: 1}, RetryAfter: time.Hour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			s := newSim(t, modelsim.Config{Faults: tt.faults})
			h.run(s.url, func(c *Config) { c.MaxAttempts = 5 })
			// First a request already past its deadline (answered without
			// a backend call): once it is answered the conversation's
			// partition is being fetched, so the timed request below does
			// not spend its 700 ms waiting for the group to settle or for
			// the first fetch (under load that took longer than 700 ms).
			warm := request("d", 1, false)
			warm.Deadline = timestamppb.New(time.Now().Add(-time.Second))
			h.produce(warm)
			if res, _ := h.collect(1); res[len(res)-1].GetError().GetCode() != CodeDeadlineExceeded || s.hits.Load() != 0 {
				t.Fatalf("a request past its deadline: %v, %d backend calls; want %s without a call", res[len(res)-1], s.hits.Load(), CodeDeadlineExceeded)
			}
			req := request("d", 0, false)
			req.Deadline = timestamppb.New(time.Now().Add(700 * time.Millisecond))
			h.produce(req)
			res, _ := h.collect(1)
			if got := res[len(res)-1].GetError().GetCode(); got != CodeDeadlineExceeded {
				t.Fatalf("result %v, want a %s error", res[len(res)-1], CodeDeadlineExceeded)
			}
			if got := s.hits.Load(); got != 1 {
				t.Errorf("backend called %d times, want 1", got)
			}
			h.noDeadLetters(300 * time.Millisecond)
		})
	}
}

// TestSystemBreakerPausesAndRecovers: when every backend's breaker is
// open the router stops fetching and requests wait instead of failing;
// once the backend recovers everything is answered, none lost, none
// dead-lettered.
func TestSystemBreakerPausesAndRecovers(t *testing.T) {
	h := newHarness(t)
	s := newSim(t, modelsim.Config{BaseLatency: time.Millisecond, Faults: modelsim.Faults{ErrorRates: map[int]float64{503: 1}}})
	h.run(s.url, func(c *Config) {
		c.MaxAttempts = 10
		c.RetryBackoff = 10 * time.Millisecond
		c.Routing.Breaker = Breaker{Failures: 2, OpenFor: 300 * time.Millisecond}
	})
	var ids []string
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			for c := range 5 {
				req := request(fmt.Sprintf("s%d", c), i, i%2 == 0)
				h.produce(req)
				ids = append(ids, req.GetRequestId())
			}
		}
	}
	produce(0, 4)
	r := h.router
	for i := 0; !r.bal.systemOpen(); i++ {
		if i == 1000 {
			t.Fatal("the system breaker did not open with every call failing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// showSystem runs just after the state changes; give it a moment.
	for i := 0; !slices.Contains(r.client.PauseFetchTopics(), interactive); i++ {
		if i == 100 {
			t.Fatalf("paused topics %v, want %s paused while the system breaker is open", r.client.PauseFetchTopics(), interactive)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := testutil.ToFloat64(r.metrics.processed.WithLabelValues("interactive", CodeBackendUnavailable)); got != 0 {
		t.Errorf("%v requests failed; they should wait", got)
	}
	produce(4, 6) // these wait in Kafka
	if err := s.SetFaults(modelsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	res, _ := h.collect(len(ids))
	checkAllFinal(t, res, ids)
	if r.bal.systemOpen() || slices.Contains(r.client.PauseFetchTopics(), interactive) {
		t.Error("the system breaker is still open, or fetching still paused, after recovery")
	}
	h.noDeadLetters(300 * time.Millisecond)
}

// TestReloadUnderLoadLosesNothing: the backends file changes (weights,
// a backend removed, one added, one with new timeouts, a bad file, a
// SIGHUP) while requests stream through; every request is answered once.
func TestReloadUnderLoadLosesNothing(t *testing.T) {
	h := newHarness(t)
	sims := map[string]*sim{}
	for _, n := range []string{"a", "b", "c"} {
		sims[n] = newSim(t, modelsim.Config{BaseLatency: 5 * time.Millisecond, Jitter: 4 * time.Millisecond})
	}
	file := filepath.Join(t.TempDir(), "backends.yaml")
	write := func(yaml string) {
		t.Helper()
		for n, s := range sims {
			yaml = strings.ReplaceAll(yaml, "URL_"+n, s.url)
		}
		tmp := file + ".tmp"
		if err := os.WriteFile(tmp, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, file); err != nil { // as editors and config maps replace files
			t.Fatal(err)
		}
	}
	const v1 = "backends:\n  - {name: a, base_url: URL_a, models: [sim]}\n  - {name: b, base_url: URL_b, models: [sim]}\n"
	const v2 = "backends:\n  - {name: a, base_url: URL_a, models: [sim], weight: 3}\n  - {name: c, base_url: URL_c, models: [sim]}\n"
	const bad = "backends:\n  - {name: a, base_url: URL_a, models: [sim], weight: -1}\n"
	const v3 = "backends:\n  - {name: b, base_url: URL_b, models: [sim], timeout: 20s}\n  - {name: c, base_url: URL_c, models: [sim], timeout: 30s}\n"
	write(v1)
	rt, err := LoadBackends(file)
	if err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	h.run("", func(c *Config) {
		c.Routing = rt
		c.BackendsFile = file
		c.ReloadInterval = 10 * time.Millisecond
		c.ReloadSignal = hup
	})
	r := h.router
	reloads := func(result string) float64 { return testutil.ToFloat64(r.metrics.reloads.WithLabelValues(result)) }
	waitFor := func(result string, n float64) {
		t.Helper()
		for i := 0; reloads(result) < n; i++ {
			if i == 500 {
				t.Fatalf("reloads{%s} = %v, want %v", result, reloads(result), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	names := func() []string {
		var out []string
		for n := range r.bal.snapshot().endpoints {
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}

	var ids []string
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			for c := range 20 {
				req := request(fmt.Sprintf("l%d", c), i, i%3 == 0)
				h.produce(req)
				ids = append(ids, req.GetRequestId())
			}
		}
	}
	produce(0, 5)
	write(v2)
	waitFor("ok", 1)
	produce(5, 10)
	write(bad)
	waitFor("error", 1)
	if got := names(); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("backends after a bad file = %v, want v2's [a c] kept", got)
	}
	produce(10, 15)
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(strings.ReplaceAll(v3, "URL_b", sims["b"].url), "URL_c", sims["c"].url)), 0o644); err != nil {
		t.Fatal(err)
	}
	hup <- os.Interrupt // the signal's kind does not matter to the router
	waitFor("ok", 2)
	produce(15, 20)
	res, _ := h.collect(len(ids))
	checkAllFinal(t, res, ids)
	if got := names(); !slices.Equal(got, []string{"b", "c"}) {
		t.Errorf("backends after v3 = %v, want [b c]", got)
	}
	if sims["c"].hits.Load() == 0 {
		t.Error("backend c, added by a reload, got no calls")
	}
	h.noDeadLetters(200 * time.Millisecond)
}
