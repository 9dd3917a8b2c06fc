package egress

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// addResult indexes a chunk of conv at offset with timestamp ts.
func addResult(r *recent, conv string, offset int64, ts time.Time, now time.Time) {
	res := &pb.Result{RequestId: "r", ConversationId: conv, Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: int32(offset)}}}
	r.add(0, offset, []byte(conv), 10, ts, res, &lazyJSON{res: res}, now)
}

func offsetsOf(evs []event) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, ev.offset)
	}
	return out
}

// checkConsistent checks the index's bookkeeping: bytes and records match
// the entries, the per-conversation slices hold exactly the partition's
// entries in offset order, and every entry is at or above low.
func checkConsistent(t *testing.T, r *recent) {
	t.Helper()
	var bytes int64
	records := 0
	for p, part := range r.parts {
		perConv := 0
		for conv, cs := range part.convs {
			perConv += len(cs)
			for i, e := range cs {
				if e.conv != conv || (i > 0 && cs[i-1].offset >= e.offset) {
					t.Errorf("partition %d conversation %q: entry %d (offset %d) out of place", p, conv, i, e.offset)
				}
			}
		}
		if perConv != len(part.recs) {
			t.Errorf("partition %d: %d entries per conversation, %d in the partition", p, perConv, len(part.recs))
		}
		for _, e := range part.recs {
			if e.offset < part.low || e.offset >= part.next {
				t.Errorf("partition %d: entry at %d outside [%d, %d)", p, e.offset, part.low, part.next)
			}
			bytes += e.size
			records++
		}
	}
	if bytes != r.bytes || records != r.records {
		t.Errorf("accounted %d bytes, %d records; entries hold %d, %d", r.bytes, r.records, bytes, records)
	}
	if r.bytes > r.maxBytes {
		t.Errorf("index holds %d bytes, bound %d", r.bytes, r.maxBytes)
	}
}

// TestRecentEvictionKeepsCoverage: eviction by bytes and by window moves
// the covered range forward, a replay from before it is refused (the
// caller reads Kafka) and one from inside it returns every result.
func TestRecentEvictionKeepsCoverage(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	entry := int64(len("a") + 2*10 + recentOverhead)
	r := newRecent(6*entry, time.Minute, newMetrics(prometheus.NewRegistry()))
	r.start(map[int32]int64{0: 100}, t0)

	// Offsets 100..109, a and b alternating, 105 a control record.
	for o := int64(100); o < 110; o++ {
		ts := t0.Add(time.Duration(o-100) * time.Second)
		if o == 105 {
			r.add(0, o, []byte("a"), 0, ts, nil, nil, ts)
			continue
		}
		conv := "a"
		if o%2 == 1 {
			conv = "b"
		}
		addResult(r, conv, o, ts, ts)
		checkConsistent(t, r)
	}
	// Nine results, room for six: 100, 101, 102 evicted.
	part := r.parts[0]
	if part.low != 103 || part.next != 110 || r.records != 6 {
		t.Fatalf("covered [%d, %d) with %d records, want [103, 110) with 6", part.low, part.next, r.records)
	}
	for _, tt := range []struct {
		conv string
		from int64
		ok   bool
		want []int64
	}{
		{"a", 100, false, nil},
		{"a", 102, false, nil},
		{"a", 103, true, []int64{104, 106, 108}},
		{"b", 103, true, []int64{103, 107, 109}},
		{"b", 108, true, []int64{109}},
		{"b", 110, true, nil},
		{"c", 103, true, nil},
	} {
		evs, ok := r.replay(tt.conv, 0, tt.from)
		if ok != tt.ok || !slices.Equal(offsetsOf(evs), tt.want) {
			t.Errorf("replay(%s, %d) = %v, %v; want %v, %v", tt.conv, tt.from, offsetsOf(evs), ok, tt.want, tt.ok)
		}
	}

	// Window: the floor is the newest evicted timestamp (102's); a window
	// reaching below it is not known, one above it is.
	if _, ok := r.windowStart(0, t0.Add(2*time.Second)); ok {
		t.Error("windowStart at the evicted entry's time answered; want Kafka")
	}
	if o, ok := r.windowStart(0, t0.Add(3*time.Second)); !ok || o != 103 {
		t.Errorf("windowStart(+3s) = %d, %v; want 103, true", o, ok)
	}
	if o, ok := r.windowStart(0, t0.Add(7*time.Second)); !ok || o != 107 {
		t.Errorf("windowStart(+7s) = %d, %v; want 107, true", o, ok)
	}
	if o, ok := r.windowStart(0, t0.Add(time.Hour)); !ok || o != 110 {
		t.Errorf("windowStart(+1h) = %d, %v; want the live position 110, true", o, ok)
	}

	// A record a minute and a half later evicts by window everything
	// older than a minute before it.
	late := t0.Add(90 * time.Second)
	addResult(r, "a", 110, late, late)
	checkConsistent(t, r)
	if part.low != 110 || r.records != 1 {
		t.Errorf("after the window passed: low %d with %d records, want 110 with 1", part.low, r.records)
	}
	if _, ok := r.replay("a", 0, 109); ok {
		t.Error("a replay from an evicted offset answered from memory")
	}
	if evs, ok := r.replay("a", 0, 110); !ok || !slices.Equal(offsetsOf(evs), []int64{110}) {
		t.Errorf("replay(a, 110) = %v, %v; want [110], true", offsetsOf(evs), ok)
	}

	// A reader that goes back (a reset) starts coverage anew.
	addResult(r, "a", 50, late, late)
	checkConsistent(t, r)
	if part := r.parts[0]; part.low != 50 || part.next != 51 || r.records != 1 {
		t.Errorf("after going back: [%d, %d) with %d records, want [50, 51) with 1", part.low, part.next, r.records)
	}
}

// samePartition returns n conversation IDs whose results share a partition
// of a topic with parts partitions.
func samePartition(n, parts int) ([]string, int32) {
	var out []string
	want := envelope.Partition("eq-0", parts)
	for i := 0; len(out) < n; i++ {
		if c := fmt.Sprintf("eq-%d", i); envelope.Partition(c, parts) == want {
			out = append(out, c)
		}
	}
	return out, want
}

// TestRecentReplayEqualsKafka: for the same ranges, the index returns the
// same results in the same order as a replay read from Kafka, and the
// window start it finds is the one Kafka lists.
func TestRecentReplayEqualsKafka(t *testing.T) {
	h := newHarness(t)
	eg := h.start(nil)
	convs, p := samePartition(3, 4)
	var recs []*pb.Result
	for i := range 30 {
		conv := convs[i%len(convs)]
		recs = append(recs, res(conv, "t", fmt.Sprintf("r%d", i/6), "run", 1, int32(i), i%6 == 5))
		recs = append(recs, res(fmt.Sprintf("other-%d", i), "t", "r", "run", 1, 0, false)) // other partitions
	}
	cursors := h.produce(recs...)
	var last int64
	for _, c := range cursors {
		if c.partition == p {
			last = max(last, c.offset)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	hub := eg.e.hub
	waitFor(ctx, t, "the live feed to pass the records", func() bool {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		return hub.next[p] > last
	})

	hub.mu.Lock()
	to := hub.next[p]
	low := hub.recent.parts[p].low
	hub.mu.Unlock()
	for _, conv := range append(convs, "absent") {
		for _, from := range []int64{low, cursors[0].offset, cursors[len(cursors)/2].offset, last, to} {
			sub, _, mem, ok := hub.subscribe(conv, p, 1, from)
			hub.unsubscribe(sub)
			if !ok {
				t.Fatalf("replay(%s, %d) not in memory, covered from %d", conv, from, low)
			}
			var kafka []event
			if err := eg.e.replay(ctx, conv, p, from, to, from, func(ev event) error { kafka = append(kafka, ev); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(offsetsOf(mem), offsetsOf(kafka)) {
				t.Fatalf("replay(%s, %d..%d): memory %v, kafka %v", conv, from, to, offsetsOf(mem), offsetsOf(kafka))
			}
			for i := range mem {
				if !proto.Equal(mem[i].res, kafka[i].res) || mem[i].partition != kafka[i].partition {
					t.Errorf("replay(%s, %d) event %d: memory %v, kafka %v", conv, from, i, mem[i].res, kafka[i].res)
				}
			}
		}
	}

	// The window start: Kafka's first offset at or after a time, at and
	// around every indexed record's.
	var times []time.Time
	hub.mu.Lock()
	for _, e := range hub.recent.parts[p].recs {
		times = append(times, e.maxTS.Add(-time.Millisecond), e.maxTS, e.maxTS.Add(time.Millisecond))
	}
	hub.mu.Unlock()
	answered := 0
	for _, ts := range times {
		mem, ok := hub.windowStart(p, ts)
		if !ok {
			continue // before the reader started: Kafka's to answer
		}
		kafka, err := eg.e.offsetAt(ctx, p, ts)
		if err != nil {
			t.Fatal(err)
		}
		if mem != kafka {
			t.Errorf("window start at %v: memory %d, kafka %d", ts, mem, kafka)
		}
		answered++
	}
	if answered < len(times)/2 {
		t.Errorf("the index answered %d of %d window starts", answered, len(times))
	}
}

// TestReplayFallsBackToKafka: a resume whose range the index no longer
// holds (here an index too small for anything) is replayed from Kafka with
// the same events as one served from memory.
func TestReplayFallsBackToKafka(t *testing.T) {
	h := newHarness(t)
	mem := h.start(nil)
	tiny := h.start(func(c *Config) { c.RecentBytes = 1 })
	want, cursors := conversation(h, "fallback")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	from := mem.token("", "fallback", cursors[5]) // every instance of the harness has the same secret
	// The memory instance must have indexed the conversation, or its events come live, not replayed.
	waitFor(ctx, t, "the index of recent results", func() bool {
		return mem.metric(t, "switchboard_egress_recent_index_records") >= float64(len(want))
	})
	rest := append(slices.Clip(want[6:]), "end:done")
	for name, eg := range map[string]*running{"memory": mem, "kafka": tiny} {
		evs, status := readSSE(ctx, t, eg.url+"/v1/conversations/fallback/events?request_id=r2", http.Header{"Last-Event-Id": {from}}, 0)
		if status != http.StatusOK || !slices.Equal(labels(evs), rest) {
			t.Errorf("%s: status %d, resumed from %s:\n%v\nwant\n%v", name, status, from, labels(evs), rest)
		}
		other := map[string]string{"memory": "kafka", "kafka": "memory"}[name]
		if n, m := eg.metric(t, "switchboard_egress_replays_total", "source", name), eg.metric(t, "switchboard_egress_replays_total", "source", other); n != 1 || m != 0 {
			t.Errorf("%s: replays from %s = %v, from %s = %v; want 1, 0", name, name, n, other, m)
		}
	}
	if n := tiny.metric(t, "switchboard_egress_recent_index_records"); n != 0 {
		t.Errorf("an index of 1 byte holds %v records", n)
	}
}

// TestStartReadsTheWindow: an egress started after results were written
// reads the last ReplayWindow into its index, so streams opened while it
// catches up and after both replay from memory, with the same events.
func TestStartReadsTheWindow(t *testing.T) {
	h := newHarness(t)
	want, _ := conversation(h, "earlier")
	eg := h.start(nil)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	all := append(slices.Clip(want), "end:done")
	url := eg.url + "/v1/conversations/earlier/events?request_id=r2"
	first, _ := readSSE(ctx, t, url, nil, 0) // at once: the reader may still be catching up
	second, _ := readSSE(ctx, t, url, nil, 0)
	for i, evs := range [][]got{first, second} {
		if !slices.Equal(labels(evs), all) {
			t.Errorf("stream %d:\n%v\nwant\n%v", i, labels(evs), all)
		}
	}
	// The first stream replays nothing when it opens before the reader
	// read anything: it gets everything live.
	if n, k := eg.metric(t, "switchboard_egress_replays_total", "source", "memory"), eg.metric(t, "switchboard_egress_replays_total", "source", "kafka"); n < 1 || k != 0 {
		t.Errorf("replays from memory %v, from kafka %v; want 1 or 2, 0", n, k)
	}
}

// TestHubHandOverUnderLoad: streams subscribing while results are
// published get every result of their conversation from their replay
// start exactly once and in order, from memory then live; with an index
// that evicts all the time, those whose start is no longer covered are
// told so (and get everything from the live position on).
func TestHubHandOverUnderLoad(t *testing.T) {
	for _, budget := range []int64{64 << 20, 40 * recentOverhead} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			const records, convs, streams = 4000, 4, 32
			h := newHub(newMetrics(prometheus.NewRegistry()), newRecent(budget, time.Hour, newMetrics(prometheus.NewRegistry())))
			h.start(map[int32]int64{0: 0}, time.Now().Add(-time.Minute), time.Now())
			var published atomic.Int64
			var wg sync.WaitGroup
			wg.Go(func() {
				for o := range int64(records) {
					rec := resultRecord(t, fmt.Sprintf("c%d", o%convs), o)
					rec.Timestamp = time.Now()
					h.publish(rec)
					published.Store(o + 1)
				}
			})
			var fromMemory, fromKafka atomic.Int64
			for i := range streams {
				wg.Go(func() {
					conv := fmt.Sprintf("c%d", i%convs)
					for published.Load() < int64(i*records/streams) {
						time.Sleep(50 * time.Microsecond)
					}
					from := max(0, published.Load()-int64(rand.IntN(200)))
					sub, liveFrom, evs, ok := h.subscribe(conv, 0, records, from)
					defer h.unsubscribe(sub)
					start := liveFrom
					if ok {
						start = from
						fromMemory.Add(1)
					} else {
						fromKafka.Add(1)
						if len(evs) != 0 {
							t.Errorf("not covered, yet %d events", len(evs))
						}
					}
					var want []int64
					for o := start; o < records; o++ {
						if o%convs == int64(i%convs) {
							want = append(want, o)
						}
					}
					got := offsetsOf(evs)
					timeout := time.After(30 * time.Second)
					for len(got) < len(want) {
						select {
						case ev := <-sub.ch:
							got = append(got, ev.offset)
						case <-timeout:
							t.Errorf("stream %d: %d of %d events after 30s", i, len(got), len(want))
							return
						}
					}
					if !slices.Equal(got, want) {
						t.Errorf("stream %d from %d (memory %v): got %d events, want %d; first %v, want %v",
							i, from, ok, len(got), len(want), got[:min(3, len(got))], want[:min(3, len(want))])
					}
				})
			}
			wg.Wait()
			t.Logf("replays from memory %d, not covered %d", fromMemory.Load(), fromKafka.Load())
			h.mu.Lock()
			checkConsistent(t, h.recent)
			h.mu.Unlock()
			if budget > 1<<20 && fromKafka.Load() != 0 {
				t.Errorf("%d streams not covered by an index that never evicts", fromKafka.Load())
			}
		})
	}
}
