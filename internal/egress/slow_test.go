package egress

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestSlowSubscriberDoesNotDelayFast: a client that stops reading fills its
// connection and then its mailbox and is cut off with reason overflow and
// a cursor, while a fast client on the same conversation keeps getting
// everything; resuming from the slow client's cursor gives the rest exactly
// once.
func TestSlowSubscriberDoesNotDelayFast(t *testing.T) {
	h := newHarness(t)
	eg := h.start(func(c *Config) { c.SubscriberBuffer = 256 })
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	url := eg.url + "/v1/conversations/busy/events?request_id=r"

	// The slow client connects and does not read.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	slow, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	var fastN atomic.Int64
	fast := make(chan []got, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fast <- nil
			return
		}
		defer resp.Body.Close()
		fast <- parseSSE(t, resp.Body, 0, func(got) { fastN.Add(1) })
	}()
	waitFor(ctx, t, "both streams to open", func() bool {
		return eg.metric(t, "switchboard_egress_subscribers", "transport", "sse") >= 2
	})

	// Produce batches (smaller than the mailbox), each once the fast client
	// has the previous one, until the slow client is cut off.
	big := strings.Repeat("x", 8<<10)
	const batch, maxEvents = 100, 6000
	n := 0
	for n < maxEvents && eg.metric(t, "switchboard_egress_subscriber_overflows_total") == 0 {
		var recs []*pb.Result
		for range batch {
			r := res("busy", "t", "r", "run", 1, int32(n), false)
			r.GetChunk().Delta = fmt.Sprintf("%d %s", n, big)
			recs = append(recs, r)
			n++
		}
		h.produce(recs...)
		waitFor(ctx, t, "the fast client to keep up", func() bool { return fastN.Load() >= int64(n) })
	}
	if got := eg.metric(t, "switchboard_egress_subscriber_overflows_total"); got != 1 {
		t.Fatalf("after %d events, overflows = %v, want 1", n, got)
	}
	h.produce(res("busy", "t", "r", "run", 1, 0, true))

	var fastEvs []got
	select {
	case fastEvs = <-fast:
	case <-ctx.Done():
		t.Fatal("the fast client did not get everything")
	}
	if len(fastEvs) != n+2 || fastEvs[n].name != "result" || fastEvs[n+1].label != endDone {
		t.Fatalf("fast client got %d events ending %v, want %d chunks, the result and end:done", len(fastEvs), tailOf(fastEvs), n)
	}

	// The slow client now reads what reached it: events, then the end.
	slowEvs := parseSSE(t, slow.Body, 0, nil)
	if len(slowEvs) == 0 || slowEvs[len(slowEvs)-1].name != "end" || slowEvs[len(slowEvs)-1].label != endOverflow {
		t.Fatalf("slow client's last events: %v, want end with reason overflow", tailOf(slowEvs))
	}
	end := slowEvs[len(slowEvs)-1]
	if len(slowEvs) > 1 && end.cursor != slowEvs[len(slowEvs)-2].cursor {
		t.Errorf("end cursor %s, want the last event's %s", end.cursor, slowEvs[len(slowEvs)-2].cursor)
	}
	// Resuming from its cursor yields the rest, once, in order.
	rest, _ := readSSE(ctx, t, url, http.Header{"Last-Event-Id": {end.cursor}}, 0)
	all := append(slices.Clip(slowEvs[:len(slowEvs)-1]), rest...)
	if len(all) != len(fastEvs) {
		t.Fatalf("slow client got %d events before and after resuming, want %d", len(all), len(fastEvs))
	}
	for i := range all {
		if all[i].cursor != fastEvs[i].cursor || all[i].label != fastEvs[i].label {
			t.Fatalf("event %d: %v, want %v", i, all[i], fastEvs[i])
		}
	}
}

func tailOf(evs []got) []got { return evs[max(0, len(evs)-3):] }

// waitFor polls cond every 5ms until it holds or ctx ends.
func waitFor(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
