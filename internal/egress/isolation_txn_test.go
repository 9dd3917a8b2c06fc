package egress

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// TestReadCommittedHidesAbortedResults: a result written in a transaction
// that aborted (router-worker --exactly-once, a partition moved before its
// commit) reaches streams read_uncommitted, the default; with
// ReadCommitted the stream sees only the redo's committed result.
func TestReadCommittedHidesAbortedResults(t *testing.T) {
	for _, committedOnly := range []bool{false, true} {
		h := newHarness(t)
		eg := h.start(func(c *Config) { c.ReadCommitted = committedOnly })
		txc, err := kgo.NewClient(kgo.SeedBrokers(h.cluster.ListenAddrs()...), kgo.TransactionalID("test-txn"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		write := func(run, content string, how kgo.TransactionEndTry) {
			r := res("conv-tx", "", "r1", run, 1, 0, true)
			r.GetFinal().Content = content
			rec, _ := envelope.EncodeResult(resultsTopic, r)
			if err := txc.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			if err := txc.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if err := txc.EndTransaction(ctx, how); err != nil {
				t.Fatal(err)
			}
		}
		write("runA", "ABORTED runA", kgo.TryAbort)
		write("runB", "COMMITTED runB", kgo.TryCommit)
		evs, _ := readSSE(ctx, t, eg.url+"/v1/conversations/conv-tx/events?request_id=r1", nil, 0)
		cancel()
		txc.Close()
		var results []string
		for _, g := range evs {
			if g.name == "result" {
				results = append(results, g.label)
			}
		}
		want := "COMMITTED runB"
		if !committedOnly {
			want = "ABORTED runA" // documented: read_uncommitted shows it first
		}
		if len(results) != 1 || results[0] != want {
			t.Errorf("ReadCommitted=%v: results %q, want [%q]", committedOnly, results, want)
		}
	}
}
