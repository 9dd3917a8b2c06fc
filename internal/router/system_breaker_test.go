package router

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/modelsim"
)

// TestSystemBreakerClosesAfterWaitersExpire: every backend fails, the
// system breaker opens and fetching pauses; the requests that were waiting
// had deadlines and all end. The backend then recovers. Nothing is left to
// call pick, yet the system must close once a breaker turns half-open and
// fetching resume, so a new request is answered. (Found in review: it sat
// in Kafka forever.)
func TestSystemBreakerClosesAfterWaitersExpire(t *testing.T) {
	h := newHarness(t)
	s := newSim(t, modelsim.Config{BaseLatency: time.Millisecond, Faults: modelsim.Faults{ErrorRates: map[int]float64{503: 1}}})
	h.run(s.url, func(c *Config) {
		c.MaxAttempts = 10
		c.RetryBackoff = 10 * time.Millisecond
		c.Routing.Breaker = Breaker{Failures: 2, OpenFor: 300 * time.Millisecond}
	})
	for c := range 3 {
		req := request(fmt.Sprintf("d%d", c), 0, false)
		req.Deadline = timestamppb.New(time.Now().Add(700 * time.Millisecond))
		h.produce(req)
	}
	res, _ := h.collect(3) // all three end: deadline_exceeded
	for _, r := range res {
		t.Logf("%s: %v", r.GetRequestId(), r.GetError().GetCode())
	}
	r := h.router
	t.Logf("after the deadlines: system open=%v paused=%v", r.bal.systemOpen(), r.client.PauseFetchTopics())
	if err := s.SetFaults(modelsim.Faults{}); err != nil { // backend healthy again
		t.Fatal(err)
	}
	h.produce(request("late", 0, false)) // no deadline
	awaitResult(t, h, s)
}

// TestSystemBreakerClosesWithoutRetries: the same stall with no deadlines
// at all: with --max-attempts 1 the requests that trip the last breaker
// are answered (dead-lettered) at once, nobody waits, nobody probes.
func TestSystemBreakerClosesWithoutRetries(t *testing.T) {
	h := newHarness(t)
	s := newSim(t, modelsim.Config{BaseLatency: time.Millisecond, Faults: modelsim.Faults{ErrorRates: map[int]float64{503: 1}}})
	h.run(s.url, func(c *Config) {
		c.MaxAttempts = 1
		c.Routing.Breaker = Breaker{Failures: 2, OpenFor: 200 * time.Millisecond}
	})
	h.produce(request("a", 0, false))
	h.produce(request("b", 0, false))
	h.collect(2)
	r := h.router
	t.Logf("system open=%v paused=%v", r.bal.systemOpen(), r.client.PauseFetchTopics())
	if err := s.SetFaults(modelsim.Faults{}); err != nil {
		t.Fatal(err)
	}
	h.produce(request("late", 0, false))
	awaitResult(t, h, s)
}

// awaitResult waits up to 5 s for a result (not a dead letter) of the
// request produced last, with the backend s healthy again.
func awaitResult(t *testing.T, h *harness, s *sim) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		got := false
		h.client.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			if rec.Topic != deadletter {
				got = true
			}
		})
		if got {
			return
		}
	}
	r := h.router
	t.Fatalf("backend healthy for 5s but the request was not processed: system open=%v, paused topics %v, backend hits %d",
		r.bal.systemOpen(), r.client.PauseFetchTopics(), s.hits.Load())
}
