package router

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/modelsim"
	"github.com/switchboard-llm/switchboard/internal/status"
)

// TestStatusBackends: the status record's backends carry each breaker's
// state, the in-flight calls and the limits of the backends file.
func TestStatusBackends(t *testing.T) {
	bad := newSim(t, modelsim.Config{Models: []string{"a"}, Faults: modelsim.Faults{ErrorRates: map[int]float64{503: 1}}})
	good := newSim(t, modelsim.Config{Models: []string{"b"}})
	r := testRouter(t, Routing{
		Backends: []Backend{{Name: "bad", BaseURL: bad.url, Models: []string{"a"}, MaxConcurrency: 3},
			{Name: "good", BaseURL: good.url, Models: []string{"b"}, RequestsPerMinute: 600, TokensPerMinute: 9000}},
		Breaker: Breaker{Failures: 2, OpenFor: time.Minute, Probes: 1},
	})
	for range 2 {
		if _, err := callOnce(t.Context(), r, []string{"a"}); err == nil {
			t.Fatal("a call succeeded on a backend answering 503")
		}
	}
	l, err := r.acquire(t.Context(), []string{"b"}, 1) // one call in flight to good
	if err != nil {
		t.Fatal(err)
	}
	defer r.bal.release(l, nil, 0)
	got := r.bal.statusBackends()
	want := []status.Backend{
		{Name: "bad", Models: []string{"a"}, Breaker: status.BreakerOpen, MaxConcurrency: 3},
		{Name: "good", Models: []string{"b"}, Breaker: status.BreakerClosed, InFlight: 1, MaxConcurrency: 64,
			RequestsPerMinute: 600, TokensPerMinute: 9000},
	}
	if len(got) != 2 {
		t.Fatalf("got %d backends, want 2", len(got))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Models[0] != w.Models[0] || g.Breaker != w.Breaker || g.InFlight != w.InFlight ||
			g.MaxConcurrency != w.MaxConcurrency || g.RequestsPerMinute != w.RequestsPerMinute || g.TokensPerMinute != w.TokensPerMinute {
			t.Errorf("backend %d: got %+v, want %+v", i, g, w)
		}
	}
}

// TestStatusRecordPublished: a running router publishes its status record:
// the request in flight while the backend works on it, then the call in
// the backend's latency window, and a tombstone when it stops.
func TestStatusRecordPublished(t *testing.T) {
	h := newHarness(t)
	const topic = "switchboard.status"
	if _, err := kadm.NewClient(h.client).CreateTopic(t.Context(), 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	stop := h.run(h.modelsim(time.Second), func(c *Config) { c.StatusInterval = 50 * time.Millisecond; c.InstanceID = "w-1" })
	h.produce(request("slow", 0, false))
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.cluster.ListenAddrs()...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var sawInFlight, sawCall, sawTombstone bool
	for !sawTombstone && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			if string(rec.Key) != "router-worker/w-1" {
				t.Errorf("key %q, want router-worker/w-1", rec.Key)
			}
			r, err := status.Decode(rec.Key, rec.Value)
			switch {
			case errors.Is(err, status.ErrTombstone):
				sawTombstone = sawCall
			case err != nil:
				t.Fatal(err)
			case r.Router.InFlight == 1 && len(r.Router.Conversations) == 1 && r.Router.Conversations[0].ID == "slow":
				sawInFlight = true
			case sawInFlight && r.Router.InFlight == 0 && len(r.Router.Backends) == 1 && r.Router.Backends[0].Calls == 1 &&
				r.Router.Backends[0].P50MS >= 500 && !sawCall:
				sawCall = true
				go stop() //nolint:errcheck // the harness's cleanup reports it
			}
		})
	}
	if !sawInFlight || !sawCall || !sawTombstone {
		t.Fatalf("in flight %v, call %v, tombstone %v; want all three in order", sawInFlight, sawCall, sawTombstone)
	}
}
