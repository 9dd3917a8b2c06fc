package keyorder

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The engine's hot paths without Kafka: taking fetched records into their
// keys' queues, dispatching them and finishing them (a goroutine per
// record), the offset tracker behind commits, and the commit snapshot.
//
//	go test -run '^$' -bench . -benchmem ./internal/keyorder/

// benchEngine returns an engine that has not joined anything, with
// partitions 0..parts-1 of topic "t" assigned, as the rebalance callback
// would leave them. Its client never connects.
func benchEngine(b *testing.B, parts int32, h Handler) *Engine {
	b.Helper()
	e, err := New(Config{Group: "bench", Topics: []string{"t"}, Handler: h, Logger: slog.New(slog.DiscardHandler),
		MaxInFlight: 4096, HighMark: 1 << 20, ClientOpts: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	e.base = context.Background()
	for part := range parts {
		tp := topicPartition{"t", part}
		p := &partition{tp: tp, lane: e.lanes["t"], convs: map[string]*conv{}, committed: -1}
		p.ctx, p.cancel = context.WithCancel(e.base)
		e.parts[tp] = p
	}
	return e
}

// BenchmarkSchedule: per record, add (into its key's queue), dispatch, the
// handler's goroutine and done, with 64 records of 16 keys per fetch of
// one of 12 partitions and a handler that returns at once.
func BenchmarkSchedule(b *testing.B) {
	const batch, keys, parts = 64, 16, 12
	var wg sync.WaitGroup
	e := benchEngine(b, parts, func(context.Context, *kgo.Record) error { wg.Done(); return nil })
	keyNames := make([][]byte, keys)
	for i := range keyNames {
		keyNames[i] = []byte("conversation-" + strconv.Itoa(i))
	}
	offsets := make([]int64, parts)
	recs := make([]*kgo.Record, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n += batch {
		part := int32(n/batch) % parts
		m := min(batch, b.N-n)
		for i := range m {
			recs[i] = &kgo.Record{Topic: "t", Partition: part, Key: keyNames[i%keys], Offset: offsets[part]}
			offsets[part]++
		}
		wg.Add(m)
		e.add("t", part, recs[:m])
		wg.Wait()
	}
}

// BenchmarkTracker: per record, take and finish with 64 records in flight
// finishing out of order, as the engine's tracker sees them.
func BenchmarkTracker(b *testing.B) {
	const window = 64
	t := newTracker(0)
	rng := rand.New(rand.NewPCG(1, 2))
	var inflight [][2]int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		o := int64(i)
		inflight = append(inflight, [2]int64{t.take(o), o})
		if len(inflight) == window {
			k := rng.IntN(window)
			c := inflight[k]
			inflight[k] = inflight[window-1]
			inflight = inflight[:window-1]
			if !t.finish(c[0], c[1]) {
				b.Fatalf("finish %v failed", c)
			}
		}
	}
}

// BenchmarkMetadata: the commit metadata of a partition with 64 records
// in flight among finished ones (what each commit encodes, per partition).
func BenchmarkMetadata(b *testing.B) {
	t := newTracker(0)
	for o := range int64(512) {
		t.take(o)
	}
	for o := int64(1); o < 512; o++ {
		if o%8 != 0 { // every eighth stays in flight
			t.finish(o, o)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var md string
	for range b.N {
		md = t.metadata()
	}
	if _, err := decodeMetadata(t.watermark(), md); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(md)), "metadata_bytes")
}

// BenchmarkCommitSnapshot: what a commit does under the engine's lock for
// 12 partitions that all changed since the last commit (watermark and
// metadata of each).
func BenchmarkCommitSnapshot(b *testing.B) {
	e := benchEngine(b, 12, func(context.Context, *kgo.Record) error { return nil })
	for _, p := range e.parts {
		p.track = newTracker(0)
		for o := range int64(256) {
			p.track.take(o)
		}
		for o := int64(1); o < 256; o += 2 {
			p.track.finish(o, o)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		want, _, _, err := e.snapshot(nil)
		if err != nil || len(want) != 12 {
			b.Fatalf("snapshot: %d partitions, %v", len(want), err)
		}
	}
}
