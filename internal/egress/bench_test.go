package egress

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// BenchmarkSSEFanOut measures one egress (reading a 4-partition results
// topic on the embedded broker, in this process) serving 1,000 SSE
// subscribers over loopback HTTP: one per conversation (1000conv), or 100
// on each of 10 conversations (10conv). b.N result records are produced
// round-robin over the conversations, each carrying its produce time;
// every subscriber parses its events and records the delay from produce to
// receipt. Reported: records/s through the egress, events/s delivered
// (records times subscribers per conversation) and the p50 and p99 of the
// delay. "max" produces as fast as the producer can; "NNNrps" paces the
// records to show latency below saturation. The broker, the egress and the
// clients share this process and its CPUs.
//
//	go test -run '^$' -bench 'BenchmarkSSEFanOut/1000conv' -benchtime 20000x ./internal/egress/
//	go test -run '^$' -bench 'BenchmarkSSEFanOut/10conv' -benchtime 2000x ./internal/egress/
func BenchmarkSSEFanOut(b *testing.B) {
	// Paced rates: 2,000 records/s to 1,000 conversations (2,000 events/s);
	// 200 records/s to 10 conversations of 100 subscribers (20,000 events/s).
	for convs, paced := range map[int]int{1000: 2000, 10: 200} {
		for _, rate := range []int{0, paced} {
			name := "max"
			if rate > 0 {
				name = fmt.Sprintf("%drps", rate)
			}
			b.Run(fmt.Sprintf("%dconv/%s", convs, name), func(b *testing.B) { benchFanOut(b, 1000, convs, rate) })
		}
	}
}

func benchFanOut(b *testing.B, subs, convs, rate int) {
	h := newHarness(b)
	eg := h.start(func(c *Config) { c.SubscriberBuffer = 4096 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var received atomic.Int64
	want := int64(b.N * (subs / convs))
	all := make(chan struct{})
	var closeOnce sync.Once
	hists := make([]*hdrhistogram.Histogram, subs)
	var wg, connected sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: subs}}
	for i := range subs {
		hists[i] = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		wg.Add(1)
		connected.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/v1/conversations/bench-%04d/events", eg.url, i%convs), nil)
			resp, err := client.Do(req)
			connected.Done()
			if err != nil {
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			marker := []byte(`"delta":"`)
			for sc.Scan() {
				line := sc.Bytes()
				if !bytes.HasPrefix(line, []byte("data: ")) {
					continue
				}
				j := bytes.Index(line, marker)
				if j < 0 {
					continue
				}
				rest := line[j+len(marker):]
				sent, err := strconv.ParseInt(string(rest[:bytes.IndexByte(rest, '"')]), 10, 64)
				if err == nil {
					_ = hists[i].RecordValue(time.Since(time.Unix(0, sent)).Microseconds())
				}
				if received.Add(1) == want {
					closeOnce.Do(func() { close(all) })
				}
			}
		}()
	}
	connected.Wait()
	for eg.metric(b, "switchboard_egress_subscribers", "transport", "sse") < float64(subs) {
		time.Sleep(10 * time.Millisecond)
	}

	prod, err := kgo.NewClient(kgo.SeedBrokers(h.cluster.ListenAddrs()...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	index := make([]int32, convs)
	record := func(k int) *kgo.Record {
		c := k % convs
		r := &pb.Result{RequestId: "r", ConversationId: fmt.Sprintf("bench-%04d", c), RunId: "run", Attempt: 1,
			Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: index[c], Delta: strconv.FormatInt(time.Now().UnixNano(), 10)}}}
		index[c]++
		rec, _ := envelope.EncodeResult(resultsTopic, r)
		return rec
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	for k := 0; k < b.N; {
		due := b.N // unpaced: everything at once
		if rate > 0 {
			due = min(b.N, 1+int(time.Since(start).Seconds()*float64(rate)))
		}
		for ; k < due; k++ {
			prod.Produce(ctx, record(k), nil)
		}
		if k < b.N {
			<-tick.C
		}
	}
	tick.Stop()
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d events arrived", received.Load(), want)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	total := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for _, hh := range hists {
		total.Merge(hh)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(want)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(total.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(total.ValueAtQuantile(99))/1000, "p99-ms")
	if n := eg.metric(b, "switchboard_egress_subscriber_overflows_total"); n > 0 {
		b.Errorf("%v subscribers overflowed", n)
	}
	cancel()
	wg.Wait()
}

// BenchmarkStreamOpen measures what a new stream costs before it goes live:
// finding where its window starts and replaying its conversation's recent
// results. "memory" opens streams against a hub whose index of recent
// results holds 50,000 results (200-byte chunks) of 10,000 conversations on
// 4 partitions (5 results per stream): window start, subscribe (mailbox of
// the default 1,024 events) with the replay snapshot, unsubscribe. It also
// reports the heap the populated index takes per byte it accounts
// (heapB/accountedB: the estimate's accuracy). "kafka" does the same
// without an index, as a stream that falls back does, against the
// embedded broker in this process: ListOffsetsAfterMilli, then a replay
// that lists the partition's bounds and scans it with its own client (2,000
// results of 400 conversations; each replay reads its partition's 500).
//
//	go test -run '^$' -bench 'BenchmarkStreamOpen/memory' -benchmem ./internal/egress/
//	go test -run '^$' -bench 'BenchmarkStreamOpen/kafka' -benchtime 200x -benchmem ./internal/egress/
func BenchmarkStreamOpen(b *testing.B) {
	b.Run("memory", benchOpenMemory)
	b.Run("kafka", benchOpenKafka)
}

func benchOpenMemory(b *testing.B) {
	const parts, convs, perConv = 4, 10_000, 5
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := newMetrics(prometheus.NewRegistry())
	h := newHub(m, newRecent(64<<20, 5*time.Minute, m))
	h.start(map[int32]int64{0: 0, 1: 0, 2: 0, 3: 0}, time.Now().Add(-10*time.Minute), time.Now())
	next := make([]int64, parts)
	names := make([]string, convs)
	for i := range names {
		names[i] = fmt.Sprintf("conversation-%06d", i)
	}
	delta := strings.Repeat("x", 160)
	for k := range perConv {
		for i, conv := range names {
			rec, err := envelope.EncodeResult(resultsTopic, &pb.Result{RequestId: fmt.Sprintf("req-%06d", i), ConversationId: conv,
				Tenant: "t", RunId: "run", Attempt: 1, Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: int32(k), Delta: delta}}})
			if err != nil {
				b.Fatal(err)
			}
			p := envelope.Partition(conv, parts)
			rec.Partition, rec.Offset, rec.Timestamp = p, next[p], time.Now()
			next[p]++
			h.publish(rec)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if h.recent.records != convs*perConv {
		b.Fatalf("index holds %d results, want %d", h.recent.records, convs*perConv)
	}
	heapPerAccounted := float64(after.HeapAlloc-before.HeapAlloc) / float64(h.recent.bytes)
	b.ReportAllocs()
	events := 0
	i := 0
	for b.Loop() {
		conv := names[i%convs]
		i++
		p := envelope.Partition(conv, parts)
		from, ok := h.windowStart(p, time.Now().Add(-5*time.Minute))
		if !ok {
			b.Fatal("window start not in memory")
		}
		sub, _, evs, ok := h.subscribe(conv, p, 1024, from)
		if !ok {
			b.Fatal("replay not in memory")
		}
		events += len(evs)
		h.unsubscribe(sub)
	}
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
	b.ReportMetric(heapPerAccounted, "heapB/accountedB")
	b.ReportMetric(float64(h.recent.bytes)/float64(h.recent.records), "accountedB/result")
}

func benchOpenKafka(b *testing.B) {
	h := newHarness(b)
	eg := h.start(func(c *Config) { c.RecentBytes = -1 })
	const convs, perConv = 400, 5
	var recs []*pb.Result
	delta := strings.Repeat("x", 160)
	for k := range perConv {
		for i := range convs {
			recs = append(recs, &pb.Result{RequestId: fmt.Sprintf("req-%06d", i), ConversationId: fmt.Sprintf("conversation-%06d", i),
				Tenant: "t", RunId: "run", Attempt: 1, Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: int32(k), Delta: delta}}})
		}
	}
	h.produce(recs...)
	ctx := context.Background()
	b.ReportAllocs()
	events := 0
	i := 0
	for b.Loop() {
		conv := fmt.Sprintf("conversation-%06d", i%convs)
		i++
		p := envelope.Partition(conv, 4)
		from, err := eg.e.offsetAt(ctx, p, time.Now().Add(-5*time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		sub, to, _, _ := eg.e.hub.subscribe(conv, p, 1024, from)
		if err := eg.e.replay(ctx, conv, p, from, to, from, func(event) error { events++; return nil }); err != nil {
			b.Fatal(err)
		}
		eg.e.hub.unsubscribe(sub)
	}
	b.ReportMetric(float64(events)/float64(b.N), "events/op")
}
