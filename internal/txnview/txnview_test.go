package txnview

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFilterShowsOnlyCommitted writes plain records and records of a
// committed and an aborted transaction, interleaved, to one partition and
// reads it read_uncommitted with control records: the filter lets plain
// records through at once, the committed transaction's records at its
// marker, and never the aborted one's.
func TestFilterShowsOnlyCommitted(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	plain, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	txA, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"), kgo.TransactionalID("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Close()
	txB, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("t"), kgo.TransactionalID("b"))
	if err != nil {
		t.Fatal(err)
	}
	defer txB.Close()
	produce := func(cl *kgo.Client, v string) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range []*kgo.Client{txA, txB} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
	}
	produce(plain, "p1")
	produce(txA, "A1")
	produce(txB, "B1")
	produce(plain, "p2")
	produce(txA, "A2")
	if err := txB.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	produce(plain, "p3")
	if err := txA.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	produce(plain, "p4")

	rd, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("t"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var f Filter
	var got, outcomes []string
	names := map[Outcome]string{Visible: "visible", Held: "held", Committed: "committed", Aborted: "aborted", Unknown: "unknown"}
	for !slices.Contains(got, "p4") && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			out, _ := f.Add(r, func(v *kgo.Record) { got = append(got, string(v.Value)) })
			outcomes = append(outcomes, names[out])
		})
	}
	if want := []string{"p1", "p2", "p3", "A1", "A2", "p4"}; !slices.Equal(got, want) {
		t.Errorf("visible %q, want %q", got, want)
	}
	if want := []string{"visible", "held", "held", "visible", "held", "aborted", "visible", "committed", "visible"}; !slices.Equal(outcomes, want) {
		t.Errorf("outcomes %q, want %q", outcomes, want)
	}
	if f.Held() != 0 {
		t.Errorf("%d records still held, want 0", f.Held())
	}
}
