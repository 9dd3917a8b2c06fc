package keyorder

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// These tests drive exactly-once commits step by step: the engine joins
// the group (two partitions of "in"), but records are taken and finished by
// the test instead of a poll loop, and kfake control functions change the
// engine's state while a transaction's requests are in flight.

func txnEngine(t *testing.T) (*Engine, *kfake.Cluster) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"), kfake.SeedTopics(1, "out"),
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "100"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return txnEngineOn(t, c, "t1", 0), c
}

// txnEngineOn starts an exactly-once engine on c without its Run loop and
// waits until it owns both partitions of "in".
func txnEngineOn(t *testing.T, c *kfake.Cluster, txnID string, commitInterval time.Duration) *Engine {
	t.Helper()
	e, err := New(Config{
		Group: "g", Topics: []string{"in"}, TransactionalID: txnID, CommitInterval: commitInterval,
		Handler: func(context.Context, *kgo.Record) error { return nil },
		// Few retries: the tests fail requests on purpose.
		ClientOpts: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.RequestRetries(2)},
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.cl.Close)
	e.base = context.Background()
	e.stopRun = func() {}
	close(e.running)
	e.join()
	for range 400 {
		e.mu.Lock()
		n := len(e.parts)
		e.mu.Unlock()
		if n == 2 {
			return e
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the engine was not assigned both partitions within 20s")
	return nil
}

func (e *Engine) testPart(p int32) *partition {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.parts[topicPartition{"in", p}]
}

// testTake takes offsets of partition p as if fetched.
func (e *Engine) testTake(p *partition, offsets ...int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, o := range offsets {
		if p.track == nil {
			p.track = newTracker(o)
		}
		p.track.take(o)
	}
}

// testFinish stages out as the output of p's offset o and finishes o, as a
// handler returning would.
func (e *Engine) testFinish(t *testing.T, p *partition, o int64, out ...string) {
	t.Helper()
	var recs []*kgo.Record
	for _, v := range out {
		recs = append(recs, &kgo.Record{Topic: "out", Value: []byte(v)})
	}
	if err := e.Stage(&kgo.Record{Topic: "in", Partition: p.tp.partition, Offset: o}, recs...); err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !p.track.finish(o, o) {
		t.Fatalf("finish %v/%d: not open", p.tp, o)
	}
}

// readCommittedOut returns the values of "out", in log order, that a
// read_committed consumer sees.
func readCommittedOut(t *testing.T, c *kfake.Cluster) []string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("out"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	end, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), "out")
	if err != nil {
		t.Fatal(err)
	}
	last, _ := end.Lookup("out", 0)
	var vals []string
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) { vals = append(vals, string(r.Value)) })
		done := false
		fs.EachPartition(func(p kgo.FetchTopicPartition) { done = done || p.LastStableOffset >= last.Offset })
		if done {
			break
		}
	}
	return vals
}

func committedOffset(t *testing.T, c *kfake.Cluster, p int32) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).FetchOffsets(kadm.RequireStable(t.Context()), "g")
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup("in", p)
	if !ok {
		return -1
	}
	return o.At
}

func wantOut(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("read_committed output %q, want %q", got, want)
	}
}

// A revoke during the shutdown drain must not drop the staged output of
// the drain's other partitions.
func TestTxnConcurrentReleasesKeepOutput(t *testing.T) {
	e, c := txnEngine(t)
	p0, p1 := e.testPart(0), e.testPart(1)
	e.testTake(p0, 0, 1)
	e.testTake(p1, 0, 1)
	e.testFinish(t, p0, 0, "A0")
	e.testFinish(t, p1, 0, "B0")
	e.mu.Lock()
	p1.closing = true // the drain is closing in/1; its offset 1 is in flight
	e.mu.Unlock()
	e.release(map[string][]int32{"in": {0}}, 0, true) // a revoke of in/0 meanwhile
	e.testFinish(t, p1, 1, "B1")
	e.release(map[string][]int32{"in": {1}}, 0, true)
	wantOut(t, readCommittedOut(t, c), "A0", "B0", "B1")
	if got := committedOffset(t, c, 1); got != 2 {
		t.Errorf("in/1 committed at %d, want 2", got)
	}
}

// A transaction that fails puts its output back in front of what was
// staged meanwhile: a key's results stay in order.
func TestTxnRestageKeepsOrder(t *testing.T) {
	e, c := txnEngine(t)
	p0 := e.testPart(0)
	e.testTake(p0, 0, 1)
	e.testFinish(t, p0, 0, "k#0")
	c.ControlKey(int16(kmsg.AddOffsetsToTxn), func(r kmsg.Request) (kmsg.Response, error, bool) {
		e.testFinish(t, p0, 1, "k#1") // the key's next record finishes while the transaction runs
		resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil, true
	})
	if err := e.commit(nil); err == nil {
		t.Fatal("the first commit succeeded; the test injects a failure")
	}
	if err := e.commit(nil); err != nil {
		t.Fatal(err)
	}
	wantOut(t, readCommittedOut(t, c), "k#0", "k#1")
}

// The loop's transaction fails after the revoke of its partition began: the
// output goes back to the closing partition, and the revoke commits it.
func TestTxnFailureDuringRevokeKeepsOutput(t *testing.T) {
	e, c := txnEngine(t)
	p0 := e.testPart(0)
	e.testTake(p0, 0, 1)
	e.testFinish(t, p0, 0, "A0")
	c.ControlKey(int16(kmsg.AddOffsetsToTxn), func(r kmsg.Request) (kmsg.Response, error, bool) {
		e.mu.Lock()
		p0.closing = true
		e.mu.Unlock()
		resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = kerr.RebalanceInProgress.Code
		return resp, nil, true
	})
	if err := e.commit(nil); err == nil {
		t.Fatal("the loop's commit succeeded; the test injects a failure")
	}
	e.testFinish(t, p0, 1, "A1")
	e.mu.Lock()
	p0.closing = false // let release close it as a revoke does
	e.mu.Unlock()
	e.release(map[string][]int32{"in": {0}}, 0, true)
	wantOut(t, readCommittedOut(t, c), "A0", "A1")
	if got := committedOffset(t, c, 0); got != 2 {
		t.Errorf("in/0 committed at %d, want 2", got)
	}
}

// Output of a partition lost and assigned back while its transaction
// failed is not restaged into the new incarnation, which redoes the work.
func TestTxnRestageSkipsNewIncarnation(t *testing.T) {
	e, c := txnEngine(t)
	old := e.testPart(0)
	e.testTake(old, 0)
	e.testFinish(t, old, 0, "X0-first")
	var fresh *partition
	c.ControlKey(int16(kmsg.AddOffsetsToTxn), func(r kmsg.Request) (kmsg.Response, error, bool) {
		e.release(map[string][]int32{"in": {0}}, 0, false) // lost
		e.mu.Lock()
		fresh = &partition{tp: old.tp, lane: e.lanes["in"], convs: map[string]*conv{}, committed: -1}
		fresh.ctx, fresh.cancel = context.WithCancel(e.base)
		e.parts[fresh.tp] = fresh // and assigned back, start offset not yet known
		e.mu.Unlock()
		resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = kerr.IllegalGeneration.Code
		return resp, nil, true
	})
	if err := e.commit(nil); err == nil {
		t.Fatal("the commit succeeded; the test injects a failure")
	}
	if err := e.commit(nil); err != nil { // the new incarnation has no tracker yet
		t.Fatal(err)
	}
	e.testTake(fresh, 0)
	e.testFinish(t, fresh, 0, "X0-second")
	if err := e.commit(nil); err != nil {
		t.Fatal(err)
	}
	wantOut(t, readCommittedOut(t, c), "X0-second")
}

// The answer to EndTxn(commit) is lost after the broker committed: the
// engine aborts what may be open, learns from the stable offsets that the
// transaction landed, and does not write its output again.
func TestTxnLostCommitAnswerNoDuplicate(t *testing.T) {
	e, c := txnEngine(t)
	p0 := e.testPart(0)
	e.testTake(p0, 0, 1)
	e.testFinish(t, p0, 0, "C0")

	drops, stop := loseEndTxnAnswers(t, c)
	err := e.commit(nil)
	stop()
	if err != nil {
		t.Logf("commit: %v", err)
	}
	if drops.Load() == 0 {
		t.Fatal("no EndTxn answer was lost: the test proves nothing")
	}
	e.testFinish(t, p0, 1, "C1")
	if err := e.commit(nil); err != nil {
		t.Fatal(err)
	}
	wantOut(t, readCommittedOut(t, c), "C0", "C1")
}

// loseEndTxnAnswers makes the broker commit (or abort) on the first EndTxn
// while its answer never reaches the engine: a raw client forwards that
// request on another connection and the engine's own connection is closed.
// Later EndTxns (the engine's retries) lose their answers too, until stop.
// drops counts the lost answers.
func loseEndTxnAnswers(t *testing.T, c *kfake.Cluster) (drops *atomic.Int32, stop func()) {
	t.Helper()
	fwd, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	var forwarding, dropping atomic.Int32
	drops = new(atomic.Int32)
	dropping.Store(1)
	c.ControlKey(int16(kmsg.EndTxn), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if forwarding.Load() == 1 || dropping.Load() == 0 {
			return nil, nil, false // the forwarded request, or after stop: process it
		}
		if drops.Add(1) == 1 {
			forwarding.Store(1)
			c.SleepControl(func() {
				if _, err := r.(*kmsg.EndTxnRequest).RequestWith(context.Background(), fwd); err != nil {
					t.Errorf("forwarding EndTxn: %v", err)
				}
			})
			forwarding.Store(0)
		}
		return nil, errors.New("answer lost"), true
	})
	return drops, func() { dropping.Store(0) }
}

// Failures while aborting must not wedge the client: the abort is retried
// (franz-go fences the old transaction by bumping the producer epoch) and
// the next commit writes everything once.
func TestTxnAbortFailuresRecover(t *testing.T) {
	e, c := txnEngine(t)
	p0 := e.testPart(0)
	e.testTake(p0, 0, 1)
	e.testFinish(t, p0, 0, "D0")
	var failing, dropped atomic.Int32
	c.ControlKey(int16(kmsg.AddOffsetsToTxn), func(r kmsg.Request) (kmsg.Response, error, bool) {
		failing.Store(1) // from here on, ending the transaction fails
		resp := r.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil, true
	})
	drop := func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if failing.Load() == 0 {
			return nil, nil, false
		}
		dropped.Add(1)
		return nil, errors.New("connection dropped"), true
	}
	c.ControlKey(int16(kmsg.EndTxn), drop)
	c.ControlKey(int16(kmsg.InitProducerID), drop)
	err := e.commit(nil)
	failing.Store(0)
	if err == nil {
		t.Fatal("the first commit succeeded; the test injects a failure")
	}
	if dropped.Load() == 0 {
		t.Fatal("no abort request was dropped: the test proves nothing")
	}
	e.testFinish(t, p0, 1, "D1")
	if err := e.commit(nil); err != nil {
		t.Fatalf("the next commit: %v", err)
	}
	wantOut(t, readCommittedOut(t, c), "D0", "D1")
}

// TestRandomisedExactlyOnce runs exactly-once engines over random keys,
// handler times and failures while members join and leave, each handler
// staging one output record per input. Once the group's committed offsets
// reach the end of the input, a read_committed reader must see every
// input's output exactly once, and each key's outputs in order.
func TestRandomisedExactlyOnce(t *testing.T) {
	const total = 600
	rng := rand.New(rand.NewPCG(5, 5))
	c := newCluster(t, 4, "in", "out")
	go produceSlowly(t, c, []string{"in"}, 30, total, 20, 10*time.Millisecond, rand.New(rand.NewPCG(5, 6)))

	chk := newChecker(t, 5)
	chk.failRate, chk.maxSleep = 0.05, 20*time.Millisecond
	var engines sync.Map // *Engine by transactional ID
	start := func(n int) func() {
		id := "txn-" + strconv.Itoa(n)
		cfg := Config{
			Group: "g", Topics: []string{"in"}, MaxInFlight: 12, HighMark: 40,
			CommitInterval: 50 * time.Millisecond, RetryBackoff: time.Millisecond,
			MaxRetryBackoff: 5 * time.Millisecond, RevokeTimeout: 2 * time.Second, TransactionalID: id,
			Logger: slog.New(slog.DiscardHandler),
			Handler: func(ctx context.Context, rec *kgo.Record) error {
				if err := chk.handle(ctx, rec); err != nil {
					return err
				}
				e, _ := engines.Load(id)
				return e.(*Engine).Stage(rec, &kgo.Record{Topic: "out", Key: rec.Key, Value: rec.Value})
			},
		}
		cfg.setDefaults()
		return startEngineWith(t, c, cfg, func(e *Engine) { engines.Store(id, e) })
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	stops := []func(){start(0)}
	members, joins, leaves := 1, 0, 0
	for step := 0; chk.done.Load() < total; step++ {
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d records finished in time", chk.done.Load(), total)
		}
		time.Sleep(time.Duration(50+rng.IntN(150)) * time.Millisecond)
		switch {
		case step < 16 && step%4 == 0 && len(stops) < 3:
			stops = append(stops, start(members))
			members++
			joins++
		case step < 16 && step%4 == 2 && len(stops) > 1:
			i := rng.IntN(len(stops))
			stops[i]()
			stops = append(stops[:i], stops[i+1:]...)
			leaves++
		}
	}
	// Every input has run once, but not every output is committed: a
	// member that lost its partitions, or whose commit failed as they were
	// revoked, dropped the output it had staged, and the partitions' next
	// owners redo that work. So the members run on until the group's
	// committed offsets reach the end of the input.
	cl := mustClient(t, c)
	waitCommittedToEnd(ctx, t, kadm.NewClient(cl), "g", "in", total)
	for _, stop := range stops {
		stop()
	}
	if joins == 0 || leaves == 0 {
		t.Errorf("no rebalance happened while records ran: the test proves little")
	}

	end, err := kadm.NewClient(cl).ListEndOffsets(ctx, "out")
	if err != nil {
		t.Fatal(err)
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("out"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	seen, next := map[string]int{}, map[string]int{}
	reached := map[int32]bool{}
	for len(reached) < 4 && ctx.Err() == nil {
		fs := rd.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			seen[string(r.Value)]++
			key := string(r.Key)
			_, s, _ := strings.Cut(string(r.Value), "/")
			if n, _ := strconv.Atoi(s); n != next[key] && seen[string(r.Value)] == 1 {
				t.Errorf("key %s: output %d where %d was next", key, n, next[key])
			}
			next[key]++
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if o, _ := end.Lookup("out", p.Partition); p.LastStableOffset >= o.Offset {
				reached[p.Partition] = true
			}
		})
		end.Each(func(o kadm.ListedOffset) {
			if o.Offset == 0 {
				reached[o.Partition] = true
			}
		})
	}
	dups := 0
	for v, n := range seen {
		if n > 1 {
			dups++
			if dups <= 5 {
				t.Errorf("output %s seen %d times", v, n)
			}
		}
	}
	if len(seen) != total || dups > 0 {
		t.Errorf("read_committed output: %d distinct of %d inputs, %d repeated", len(seen), total, dups)
	}
	t.Logf("%d inputs, each output once; %d members joined and %d left while they ran", total, joins, leaves)
}

// waitCommittedToEnd waits until group's stable committed offsets of topic
// add up to total (every record produced, and committed as done), or fails
// the test when ctx ends first.
func waitCommittedToEnd(ctx context.Context, t *testing.T, adm *kadm.Client, group, topic string, total int64) {
	t.Helper()
	var at int64
	for ctx.Err() == nil {
		offs, err := adm.FetchOffsets(kadm.RequireStable(ctx), group)
		if err == nil {
			at = 0
			offs.Each(func(o kadm.OffsetResponse) {
				if o.Topic == topic && o.At > 0 {
					at += o.At
				}
			})
			if at == total {
				return
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("the group's committed offsets of %s reached %d of %d in time", topic, at, total)
}
