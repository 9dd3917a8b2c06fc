package egress

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestReplayPoolHoldsTransactions: streams replaying from Kafka through
// the replay pool get a committed transaction's results at its marker
// (after the plain results written meanwhile), never an aborted one's, and
// a transaction that commits after their range from the live feed, once.
// Every stream reads slowly through a queue of one event, so streams leave
// passes while the pass holds a transaction's results (some at its very
// marker) and later passes must read that transaction again.
func TestReplayPoolHoldsTransactions(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	const conv = "pool-txn"
	plain := func(label string) cursor { return h.produce(txnFinal(conv, label, "run", label))[0] }
	a := newTxnWriter(t, h, "txn-a")
	b := newTxnWriter(t, h, "txn-b")
	d := newTxnWriter(t, h, "txn-d")

	first := plain("h0")
	a.begin()
	a.write(ctx, txnFinal(conv, "A1", "run", "A1"), txnFinal(conv, "A2", "run", "A2"))
	plain("p1")
	b.begin()
	b.write(ctx, txnFinal(conv, "B1", "run", "ABORTED"))
	plain("p2")
	a.write(ctx, txnFinal(conv, "A3", "run", "A3"))
	plain("p3")
	a.end(ctx, kgo.TryCommit)
	b.end(ctx, kgo.TryAbort)
	plain("p4")
	a.begin()
	a.write(ctx, txnFinal(conv, "C1", "run", "C1"), txnFinal(conv, "C2", "run", "C2"))
	a.end(ctx, kgo.TryCommit)
	d.begin()
	d.write(ctx, txnFinal(conv, "D1", "run", "D1")) // commits after the streams' ranges

	eg := h.start(func(cfg *Config) {
		cfg.RecentBytes = -1                // no index: every replay reads Kafka
		cfg.ReplayWindow = time.Millisecond // the cursor says where to start
		cfg.MaxStreamsPerConversation = -1
		cfg.ReplayReaders = 1
	})
	eg.e.replays.queue = 1
	const streams = 6
	sessions := make([]*session, streams)
	sinks := make([]*recordSink, streams)
	for i := range sessions {
		s, aerr := eg.e.open(ctx, subRequest{conv: conv, from: eg.token("", conv, cursor{partition: first.partition, offset: -1}), until: "last"})
		if aerr != nil {
			t.Fatalf("open stream %d: %v", i, aerr)
		}
		sessions[i], sinks[i] = s, &recordSink{slow: time.Millisecond}
	}
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			defer s.close()
			if err := s.run(ctx, sinks[i]); err != nil {
				t.Errorf("stream %d: %v", i, err)
			}
		})
	}
	d.end(ctx, kgo.TryCommit)
	plain("last")
	wg.Wait()

	want := []string{"h0", "p1", "p2", "p3", "A1", "A2", "A3", "p4", "C1", "C2", "D1", "last", "done"}
	for i, sk := range sinks {
		var got []string
		at := map[string]string{}
		for _, e := range sk.events {
			label, offset, _ := strings.Cut(e[strings.Index(e, ":")+1:], "@")
			got = append(got, label)
			at[label] = offset
		}
		if !slices.Equal(got, want) {
			t.Errorf("stream %d got %q, want %q", i, sk.events, want)
			continue
		}
		// One marker let A1..A3 through, another C1 and C2.
		if at["A1"] != at["A3"] || at["A1"] == at["p3"] || at["C1"] != at["C2"] {
			t.Errorf("stream %d: held results not at their marker: %q", i, sk.events)
		}
	}
	if n := eg.metric(t, "switchboard_egress_replay_streams_detached_total"); n == 0 {
		t.Error("no stream left a pass: the slow path was not exercised")
	}
	t.Logf("%v passes, %v streams detached, %v records scanned", eg.metric(t, "switchboard_egress_replay_passes_total"),
		eg.metric(t, "switchboard_egress_replay_streams_detached_total"), eg.metric(t, "switchboard_egress_replay_records_scanned_total"))
}
