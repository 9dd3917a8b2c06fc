package keyorder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The previous owner crashed in the middle of a transaction (after
// TxnOffsetCommit, before EndTxn). Its successor sees UNSTABLE_OFFSET_COMMIT
// until the transaction times out, and must wait for stable offsets rather
// than start without the commit metadata and redo finished work whose
// output an earlier transaction committed. (Found in review.)
func TestTxnNewOwnerWaitsForStableOffsets(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"), kfake.SeedTopics(1, "out"),
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "100"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	pr, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"a", "b", "c"} {
		if err := pr.ProduceSync(t.Context(), &kgo.Record{Topic: "in", Partition: 0, Key: []byte(k), Value: []byte(fmt.Sprint(i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	pr.Close()

	// First owner: offset 1 finishes (offset 0, another key, is slow) and
	// commits with its output: watermark 0, metadata "1 finished".
	minTxnTimeout = 2 * time.Second // the abandoned transaction times out after that
	t.Cleanup(func() { minTxnTimeout = 10 * time.Second })
	e1 := txnEngineOn(t, c, "t1", 100*time.Millisecond) // transaction timeout 2 s
	p0 := e1.testPart(0)
	e1.testTake(p0, 0, 1, 2)
	e1.testFinish(t, p0, 1, "out-0-1")
	if err := e1.commit(nil); err != nil {
		t.Fatal(err)
	}
	// Then offset 2 finishes, and the owner crashes mid-transaction.
	e1.testFinish(t, p0, 2, "out-0-2")
	if err := e1.cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := e1.cl.ProduceSync(t.Context(), &kgo.Record{Topic: "out", Value: []byte("out-0-2")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e1.mu.Lock()
	pts := map[topicPartition]commitPoint{p0.tp: {p0, p0.track.watermark(), p0.track.metadata()}}
	e1.mu.Unlock()
	member, gen := e1.cl.GroupMetadata()
	if err := e1.txnOffsetCommit(t.Context(), pts, member, gen); err != nil {
		t.Fatal(err)
	}
	e1.mu.Lock()
	e1.txn.staged = nil // the crash loses it
	e1.mu.Unlock()
	e1.cl.Close() // no EndTxn: the transaction stays open until it times out
	t.Log("first owner gone with its transaction open")

	var mu sync.Mutex
	var handled []int64
	var e2 *Engine
	start := time.Now()
	startEngineWith(t, c, Config{Group: "g", Topics: []string{"in"}, TransactionalID: "t2",
		CommitInterval: 100 * time.Millisecond,
		Handler: func(ctx context.Context, rec *kgo.Record) error {
			mu.Lock()
			handled = append(handled, rec.Offset)
			mu.Unlock()
			return e2.Stage(rec, &kgo.Record{Topic: "out", Value: []byte(fmt.Sprintf("out-%d-%d", rec.Partition, rec.Offset))})
		}}, func(e *Engine) { e2 = e })
	for time.Since(start) < 60*time.Second {
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		n := len(handled)
		mu.Unlock()
		if n >= 2 {
			break
		}
	}
	// Wait for its commit: the three outputs become visible to a
	// read_committed reader.
	var got []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = readCommittedOut(t, c); len(got) >= 3 {
			break
		}
	}
	mu.Lock()
	t.Logf("second owner handled offsets %v (after %v)", handled, time.Since(start).Round(time.Second))
	mu.Unlock()
	slices.Sort(got) // three keys: no order between them
	wantOut(t, got, "out-0-0", "out-0-1", "out-0-2")
}

// The EndTxn answer is lost after the broker committed, and the
// stable-offset read that decides the outcome first meets a transient
// error (real Kafka returns UNSTABLE_OFFSET_COMMIT briefly after a
// transaction completes): the read is retried, and the output is not
// written again. (Found in review.)
func TestTxnLostCommitAnswerRetriesUnstableRead(t *testing.T) {
	e, c := txnEngine(t)
	p0 := e.testPart(0)
	e.testTake(p0, 0, 1)
	e.testFinish(t, p0, 0, "C0")

	drops, stop := loseEndTxnAnswers(t, c)
	var unstable atomic.Int32
	c.ControlKey(int16(kmsg.OffsetFetch), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if drops.Load() == 0 || unstable.Add(1) > 1 {
			return nil, nil, false
		}
		req := r.(*kmsg.OffsetFetchRequest)
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		part := kmsg.NewOffsetFetchResponseGroupTopicPartition()
		part.Partition, part.Offset, part.ErrorCode = 0, -1, kerr.UnstableOffsetCommit.Code
		top := kmsg.NewOffsetFetchResponseGroupTopic()
		top.Topic, top.Partitions = "in", []kmsg.OffsetFetchResponseGroupTopicPartition{part}
		if len(req.Groups) > 0 {
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group, g.Topics = req.Groups[0].Group, []kmsg.OffsetFetchResponseGroupTopic{top}
			resp.Groups = append(resp.Groups, g)
		} else {
			tp := kmsg.NewOffsetFetchResponseTopicPartition()
			tp.Partition, tp.Offset, tp.ErrorCode = 0, -1, kerr.UnstableOffsetCommit.Code
			tt := kmsg.NewOffsetFetchResponseTopic()
			tt.Topic, tt.Partitions = "in", []kmsg.OffsetFetchResponseTopicPartition{tp}
			resp.Topics = append(resp.Topics, tt)
		}
		return resp, nil, true
	})
	err := e.commit(nil)
	stop()
	if drops.Load() == 0 || unstable.Load() == 0 {
		t.Fatal("nothing injected: the test proves nothing")
	}
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	e.testFinish(t, p0, 1, "C1")
	if err := e.commit(nil); err != nil {
		t.Fatal(err)
	}
	wantOut(t, readCommittedOut(t, c), "C0", "C1")
}

// Records without output stage nothing: their offsets move with the next
// transaction that carries output. (A transaction of offsets alone would
// never be ended: franz-go sends no EndTxn when nothing was produced.)
func TestTxnRecordsWithoutOutput(t *testing.T) {
	e, c := txnEngine(t)
	p0 := e.testPart(0)
	e.testTake(p0, 0, 1)
	e.testFinish(t, p0, 0) // no output
	if err := e.commit(nil); err != nil {
		t.Fatal(err)
	}
	if got := committedOffset(t, c, 0); got != -1 {
		t.Errorf("in/0 committed at %d with no output; want nothing committed yet", got)
	}
	e.testFinish(t, p0, 1, "E1")
	if err := e.commit(nil); err != nil {
		t.Fatalf("the commit with output: %v", err)
	}
	if err := e.commit(nil); err != nil {
		t.Fatalf("the commit after: %v", err)
	}
	wantOut(t, readCommittedOut(t, c), "E1")
	if got := committedOffset(t, c, 0); got != 2 {
		t.Errorf("in/0 committed at %d, want 2", got)
	}
}

// When the outcome of a transaction cannot be learned, writing its output
// again could repeat it and dropping it could lose it: the engine stops
// for good without committing more, and its partitions' next owners start
// from the stable offsets.
func TestTxnUnknownOutcomeStops(t *testing.T) {
	e, c := txnEngine(t)
	e.txnTimeout = -commitTimeout + time.Second // learn the outcome for 1s only
	stopped := make(chan struct{})
	e.stopRun = func() { close(stopped) }
	p0 := e.testPart(0)
	e.testTake(p0, 0, 1)
	e.testFinish(t, p0, 0, "U0")
	c.ControlKey(int16(kmsg.EndTxn), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, errors.New("answer lost"), true
	})
	c.ControlKey(int16(kmsg.OffsetFetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		return nil, errors.New("unreachable"), true
	})
	if err := e.commit(nil); err == nil {
		t.Fatal("commit succeeded; its outcome cannot be known")
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the engine did not stop")
	}
	e.testFinish(t, p0, 1, "U1")
	if err := e.commit(nil); err == nil || !strings.Contains(err.Error(), "cannot go on") {
		t.Errorf("a commit after the stop: %v; want the fatal error", err)
	}
}
