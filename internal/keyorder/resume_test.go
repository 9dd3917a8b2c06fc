package keyorder

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// longWait is the fetch wait of these tests: router-worker's default. The
// bound they check, promptBound, is far below it, so a record that waited
// for a fetch to time out fails them however slow the machine.
const (
	longWait    = 5 * time.Second
	promptBound = 2 * time.Second
)

// TestIdleRecordIsPrompt: a record produced while the engine is idle (its
// fetches waiting on the brokers) is handled well before the fetch wait
// ends, on every partition.
func TestIdleRecordIsPrompt(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.SeedTopics(6, "t"),
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "100"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var mu sync.Mutex
	handled := map[int32]time.Time{}
	handler := func(_ context.Context, rec *kgo.Record) error {
		mu.Lock()
		defer mu.Unlock()
		handled[rec.Partition] = time.Now()
		return nil
	}
	var e *Engine
	startEngineWith(t, c, Config{Group: "g", Topics: []string{"t"}, Handler: handler,
		ClientOpts: []kgo.Opt{kgo.FetchMaxWait(longWait)}}, func(x *Engine) { e = x })
	if !waitFor(10*time.Second, func() bool { return e.Status().Joined }) {
		t.Fatal("the engine did not join")
	}
	p := mustClient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	// Warm up: one record on every partition, handled. A partition whose
	// offsets load while its broker's fetch is already waiting joins the
	// next fetch only (franz-go does not cut a fetch short to add a
	// cursor), so right after the join a first record may wait out one
	// fetch wait; that is startup, not the idle case this test is about.
	for part := range int32(6) {
		if err := p.ProduceSync(t.Context(), &kgo.Record{Topic: "t", Partition: part, Value: []byte("warm")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if !waitFor(3*longWait, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(handled) == 6
	}) {
		t.Fatal("the warm-up records were not all handled")
	}
	mu.Lock()
	clear(handled)
	mu.Unlock()
	for part := range int32(6) {
		time.Sleep(300 * time.Millisecond) // idle: the fetches wait on the brokers
		sent := time.Now()
		if err := p.ProduceSync(t.Context(), &kgo.Record{Topic: "t", Partition: part, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		ok := waitFor(longWait+time.Second, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return !handled[part].IsZero()
		})
		mu.Lock()
		got := handled[part].Sub(sent)
		mu.Unlock()
		if !ok || got > promptBound {
			t.Errorf("partition %d: record handled %v after it was produced (handled: %v), want within %v (fetch wait %v)", part, got, ok, promptBound, longWait)
		}
	}
	if got := testutil.CollectAndCount(e.m.fetchDelay); got != 1 {
		t.Errorf("fetch delay series: got %d, want 1 (topic t)", got)
	}
}

// TestResumeIsPrompt: a partition paused at its high mark and resumed at its
// low mark fetches the records that arrived meanwhile at once, although
// its broker's other partition is idle and the fetch waiting for it would
// end only after the fetch wait (see resume.go).
func TestResumeIsPrompt(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"),
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "100"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var n atomic.Int64
	handler := func(context.Context, *kgo.Record) error {
		time.Sleep(10 * time.Millisecond)
		n.Add(1)
		return nil
	}
	var e *Engine
	startEngineWith(t, c, Config{Group: "g", Topics: []string{"t"}, Handler: handler, HighMark: 4, LowMark: 2,
		ClientOpts: []kgo.Opt{kgo.FetchMaxWait(longWait)}}, func(x *Engine) { e = x })
	if !waitFor(10*time.Second, func() bool { return e.Status().Joined }) {
		t.Fatal("the engine did not join")
	}
	p := mustClient(t, c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	send := func(from, to int) {
		for i := from; i < to; i++ {
			// One key: the records run one after another, so the
			// partition's backlog drains slowly enough to pause it.
			r := &kgo.Record{Topic: "t", Partition: 0, Key: []byte("k"), Value: []byte(fmt.Sprint(i))}
			if err := p.ProduceSync(t.Context(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	paused := func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		p := e.parts[topicPartition{"t", 0}]
		return p != nil && p.paused
	}
	send(0, 10)
	if !waitFor(5*time.Second, paused) {
		t.Fatal("partition 0 was not paused at its high mark")
	}
	// Produced while paused: the only fetch in flight asks for the idle
	// partition 1 and waits longWait.
	sent := time.Now()
	send(10, 20)
	ok := waitFor(longWait+2*time.Second, func() bool { return n.Load() == 20 })
	if got := time.Since(sent); !ok || got > promptBound {
		t.Errorf("the records produced while paused were handled %v later (%d of 20 done), want within %v (fetch wait %v)", got, n.Load(), promptBound, longWait)
	}
}
