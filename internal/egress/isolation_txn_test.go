package egress

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/webhook"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// txnWriter writes results in transactions, as router-worker
// --exactly-once writes terminal results.
type txnWriter struct {
	t  *testing.T
	cl *kgo.Client
}

func newTxnWriter(t *testing.T, h *harness, id string) *txnWriter {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.cluster.ListenAddrs()...), kgo.TransactionalID(id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &txnWriter{t: t, cl: cl}
}

func (w *txnWriter) begin() {
	w.t.Helper()
	if err := w.cl.BeginTransaction(); err != nil {
		w.t.Fatal(err)
	}
}

func (w *txnWriter) write(ctx context.Context, results ...*pb.Result) {
	w.t.Helper()
	for _, r := range results {
		rec, err := envelope.EncodeResult(resultsTopic, r)
		if err != nil {
			w.t.Fatal(err)
		}
		if err := w.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			w.t.Fatal(err)
		}
	}
}

func (w *txnWriter) end(ctx context.Context, how kgo.TransactionEndTry) {
	w.t.Helper()
	if err := w.cl.EndTransaction(ctx, how); err != nil {
		w.t.Fatal(err)
	}
}

func txnFinal(conv, req, run, content string) *pb.Result {
	r := res(conv, "", req, run, 1, 0, true)
	r.GetFinal().Content = content
	return r
}

// TestReadCommittedHidesAbortedResults: a result written in a transaction
// that aborted (router-worker --exactly-once, a partition moved before its
// commit) never reaches a stream, read_uncommitted (the default: the
// markers let results through) or read_committed; the redo's committed
// result does.
func TestReadCommittedHidesAbortedResults(t *testing.T) {
	for _, committedOnly := range []bool{false, true} {
		h := newHarness(t)
		eg := h.start(func(c *Config) { c.ReadCommitted = committedOnly })
		w := newTxnWriter(t, h, "test-txn")
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		w.begin()
		w.write(ctx, txnFinal("conv-tx", "r1", "runA", "ABORTED runA"))
		w.end(ctx, kgo.TryAbort)
		w.begin()
		w.write(ctx, txnFinal("conv-tx", "r1", "runB", "COMMITTED runB"))
		w.end(ctx, kgo.TryCommit)
		evs, _ := readSSE(ctx, t, eg.url+"/v1/conversations/conv-tx/events?request_id=r1", nil, 0)
		cancel()
		var results []string
		for _, g := range evs {
			if g.name == "result" {
				results = append(results, g.label)
			}
		}
		if want := []string{"COMMITTED runB"}; !slices.Equal(results, want) {
			t.Errorf("ReadCommitted=%v: results %q, want %q", committedOnly, results, want)
		}
		if got := eg.metric(t, "switchboard_egress_txn_aborted_results_total"); !committedOnly && got != 1 {
			t.Errorf("aborted results dropped: %v, want 1", got)
		}
	}
}

// TestTransactionalResultsWaitForCommit: a terminal result of an open
// transaction is held while plain chunks written after it stream at once;
// it reaches live streams and resumed ones at its commit, once; a resume
// from the cursor of one of several results one commit let through gets
// the rest; from the index of recent results and from Kafka.
func TestTransactionalResultsWaitForCommit(t *testing.T) {
	for _, tc := range []struct {
		name   string
		recent int64
	}{{"index", 0}, {"kafka", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			eg := h.start(func(c *Config) { c.RecentBytes = tc.recent })
			w := newTxnWriter(t, h, "test-txn")
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			url := eg.url + "/v1/conversations/conv-h/events"

			h.produce(res("conv-h", "", "r1", "run1", 1, 0, false))
			w.begin()
			w.write(ctx, txnFinal("conv-h", "r1", "run1", "R1"))
			h.produce(res("conv-h", "", "r2", "run1", 1, 0, false))
			evs, _ := readSSE(ctx, t, url, nil, 2)
			if got := names(evs); !slices.Equal(got, []string{"chunk:r1/run1/1/0", "chunk:r2/run1/1/0"}) {
				t.Fatalf("with the transaction open: %q, want both chunks and no result", got)
			}

			// A stream resumed after the chunks, open while the
			// transaction commits, gets the result; so does one
			// resumed from the same cursor after the commit.
			after := evs[1].cursor
			live := make(chan []got, 1)
			go func() {
				evs, _ := readSSE(ctx, t, url+"?from="+after, nil, 1)
				live <- evs
			}()
			waitFor(ctx, t, "the resumed stream to subscribe", func() bool { return eg.metric(t, "switchboard_egress_subscribers", "transport", "sse") == 1 })
			w.end(ctx, kgo.TryCommit)
			got := <-live
			if names(got) == nil || names(got)[0] != "result:R1" {
				t.Fatalf("live after the commit: %q, want result:R1", names(got))
			}
			resumed, _ := readSSE(ctx, t, url+"?from="+after, nil, 1)
			if names(resumed) == nil || names(resumed)[0] != "result:R1" || resumed[0].cursor != got[0].cursor {
				t.Fatalf("resumed after the commit: %v, want %v", resumed, got)
			}

			// One commit lets two results through: a resume from the
			// first's cursor gets the second, and nothing twice.
			w.begin()
			w.write(ctx, txnFinal("conv-h", "r3", "run1", "R3"), txnFinal("conv-h", "r4", "run1", "R4"))
			w.end(ctx, kgo.TryCommit)
			h.produce(res("conv-h", "", "r5", "run1", 1, 0, false))
			two, _ := readSSE(ctx, t, url+"?from="+got[0].cursor, nil, 3)
			if want := []string{"result:R3", "result:R4", "chunk:r5/run1/1/0"}; !slices.Equal(names(two), want) {
				t.Fatalf("after R1: %q, want %q", names(two), want)
			}
			rest, _ := readSSE(ctx, t, url+"?from="+two[0].cursor, nil, 2)
			if want := []string{"result:R4", "chunk:r5/run1/1/0"}; !slices.Equal(names(rest), want) {
				t.Fatalf("after R3: %q, want %q", names(rest), want)
			}
		})
	}
}

func names(evs []got) []string {
	var out []string
	for _, g := range evs {
		out = append(out, g.name+":"+g.label)
	}
	return out
}

// TestWebhooksSkipAbortedTransaction: a terminal result of a transaction
// that aborted is never POSTed; the redo's committed one is, once.
func TestWebhooksSkipAbortedTransaction(t *testing.T) {
	const secret = "default-secret-0123456789"
	rc, srv := newReceiver(t, func(string, int) int { return http.StatusOK })
	rc.secret["/hook"] = webhook.TenantKey([]byte(secret), "t")
	h := newHarness(t)
	h.start(func(c *Config) {
		c.Webhooks = webhook.Config{Enabled: true, Allow: []string{srv.URL + "/"}, Secret: []byte(secret)}
	})
	w := newTxnWriter(t, h, "test-txn")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, how := range []kgo.TransactionEndTry{kgo.TryAbort, kgo.TryCommit} {
		r := hookFinal("conv-w", "t", "w1", srv.URL+"/hook")
		r.RunId = map[kgo.TransactionEndTry]string{kgo.TryAbort: "aborted", kgo.TryCommit: "committed"}[how]
		r.GetFinal().Content = r.RunId
		w.begin()
		w.write(ctx, r)
		w.end(ctx, how)
	}
	h.produce(hookFinal("conv-w", "t", "w2", srv.URL+"/hook")) // a plain result after them: delivered last
	waitFor(ctx, t, "the deliveries", func() bool { return len(rc.requests("/hook")) >= 2 })
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var got []string
	for _, r := range rc.got["/hook"] {
		got = append(got, r.GetRequestId()+"/"+r.GetFinal().GetContent())
	}
	if want := []string{"w1/committed", "w2/done w2"}; !slices.Equal(got, want) {
		t.Errorf("delivered %q, want %q", got, want)
	}
}
