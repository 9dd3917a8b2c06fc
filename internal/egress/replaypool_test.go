package egress

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// recordSink is a sink that keeps what a stream writes, as labels.
type recordSink struct {
	slow   time.Duration // a pause before each event: a slow client
	events []string
}

func (s *recordSink) event(_ string, name string, ev event, _ view) error {
	if s.slow > 0 {
		time.Sleep(s.slow)
	}
	s.events = append(s.events, fmt.Sprintf("%s:%s@%d", name, labelOf(ev.res), ev.offset))
	return nil
}

func (s *recordSink) restart(r *pb.Restart) error {
	s.events = append(s.events, "restart:"+r.GetRequestId())
	return nil
}

func (s *recordSink) end(reason string, _ string) error {
	s.events = append(s.events, "end:"+reason)
	return nil
}

func (s *recordSink) keepAlive(context.Context) error { return nil }

// countConnections counts the connections the cluster accepts: every
// franz-go connection begins with an ApiVersions request.
func countConnections(h *harness) *atomic.Int64 {
	var n atomic.Int64
	h.cluster.ControlKey(int16(kmsg.ApiVersions), func(kmsg.Request) (kmsg.Response, error, bool) {
		h.cluster.KeepControl()
		n.Add(1)
		return nil, nil, false
	})
	return &n
}

// resumeCase is one run of many streams resuming from old cursors.
type resumeCase struct {
	convs, history, streams, live int
	readers                       int
	queue                         int
	readerBytes                   int64
	slowEvery                     int // every slowEvery-th stream writes slowly (0: none)
}

// runResumes writes history results for each of convs conversations,
// starts an egress without an index of recent results (every replay reads
// Kafka), resumes streams streams at once from random cursors of that
// history, writes live results and a last answer per conversation, and
// checks that every stream got exactly its conversation's results after
// its cursor, in order, then ended. It returns the connections the
// cluster accepted while the streams resumed, and the egress.
func runResumes(t *testing.T, c resumeCase) (int64, *running) {
	h := newHarness(t)
	conns := countConnections(h)
	type rec struct {
		conv  string
		c     cursor
		label string
	}
	convName := func(i int) string { return fmt.Sprintf("resume-%d", i) }
	var written []rec
	for i := range c.history {
		for j := range c.convs {
			r := res(convName(j), "", fmt.Sprintf("h%d", i), "run", 1, 0, true)
			written = append(written, rec{convName(j), h.produce(r)[0], "result:" + labelOf(r)})
		}
	}
	eg := h.start(func(cfg *Config) {
		cfg.RecentBytes = -1                  // no index: every replay reads Kafka
		cfg.ReplayWindow = time.Millisecond   // a resume replays from its cursor only
		cfg.MaxStreamsPerConversation = -1    // many streams per conversation
		cfg.MaxStreamsPerTenant = -1          //
		cfg.ReplayReaders = c.readers         //
		cfg.ReplayReaderBytes = c.readerBytes //
	})
	if c.queue > 0 {
		eg.e.replays.queue = c.queue
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()

	// Open every stream (each subscribes at the live position), then run
	// them all at once.
	rng := rand.New(rand.NewPCG(1, 2))
	type stream struct {
		conv string
		from int64 // the cursor's offset
		sess *session
		sink *recordSink
	}
	streams := make([]*stream, c.streams)
	for i := range streams {
		conv := convName(i % c.convs)
		var mine []cursor
		for _, w := range written {
			if w.conv == conv {
				mine = append(mine, w.c)
			}
		}
		from := mine[rng.IntN(len(mine))]
		if i%7 == 0 {
			from.offset = -1 // a cursor from before anything: the whole partition
		}
		s, aerr := eg.e.open(ctx, subRequest{conv: conv, from: eg.token("", conv, from), until: "last"})
		if aerr != nil {
			t.Fatalf("open stream %d: %v", i, aerr)
		}
		sk := &recordSink{}
		if c.slowEvery > 0 && i%c.slowEvery == 0 {
			sk.slow = time.Millisecond
		}
		streams[i] = &stream{conv: conv, from: from.offset, sess: s, sink: sk}
	}
	before := conns.Load()
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() {
			defer s.sess.close()
			if err := s.sess.run(ctx, s.sink); err != nil {
				t.Errorf("stream of %s: %v", s.conv, err)
			}
		})
	}
	// Live results, then each conversation's last answer, which ends its
	// streams.
	for i := range c.live + 1 {
		for j := range c.convs {
			req := fmt.Sprintf("l%d", i)
			if i == c.live {
				req = "last"
			}
			r := res(convName(j), "", req, "run", 1, 0, true)
			written = append(written, rec{convName(j), h.produce(r)[0], "result:" + labelOf(r)})
		}
	}
	wg.Wait()
	opened := conns.Load() - before
	bad := 0
	for i, s := range streams {
		var want []string
		for _, w := range written {
			if w.conv == s.conv && w.c.offset > s.from {
				want = append(want, fmt.Sprintf("%s@%d", w.label, w.c.offset))
			}
		}
		want = append(want, "end:done")
		if !slices.Equal(s.sink.events, want) {
			if bad++; bad == 1 {
				t.Errorf("stream %d of %s from offset %d got\n%v\nwant\n%v", i, s.conv, s.from, s.sink.events, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d streams did not get exactly their results", bad, len(streams))
	}
	if n := eg.metric(t, "switchboard_egress_replays_total", "source", "kafka"); n < float64(c.streams*9/10) || n > float64(c.streams) {
		t.Errorf("replays from Kafka = %v, want most of %d (a cursor at the end of its partition replays nothing)", n, c.streams)
	}
	t.Logf("%d streams: %d connections opened while resuming, %v records scanned, %v passes, %v streams detached",
		c.streams, opened, eg.metric(t, "switchboard_egress_replay_records_scanned_total"),
		eg.metric(t, "switchboard_egress_replay_passes_total"), eg.metric(t, "switchboard_egress_replay_streams_detached_total"))
	return opened, eg
}

// TestResumesShareReaders: thousands of streams resuming at once from old
// cursors of several conversations on every partition each get exactly
// their missing results in order, then the live ones, and the egress opens
// a bounded number of Kafka connections for them (one client per reader,
// not one per stream).
func TestResumesShareReaders(t *testing.T) {
	const readers = 2
	opened, eg := runResumes(t, resumeCase{convs: 24, history: 20, streams: 2000, live: 3, readers: readers, readerBytes: 16 << 20})
	// A client opens a few connections (seed, metadata, fetch): far
	// fewer than one per stream.
	if bound := int64(readers * 8); opened > bound {
		t.Errorf("%d connections opened for 2000 resumes, want at most %d", opened, bound)
	}
	if n := eg.metric(t, "switchboard_egress_replay_clients_total"); n < 1 || n > readers {
		t.Errorf("replay clients created = %v, want 1 to %d", n, readers)
	}
	if n := eg.metric(t, "switchboard_egress_replay_readers"); n > readers {
		t.Errorf("replay readers open = %v, want at most %d", n, readers)
	}
	if n := eg.metric(t, "switchboard_egress_replay_streams"); n != 0 {
		t.Errorf("replay streams left = %v, want 0", n)
	}
}

// TestResumesSlowStreams: streams that read slowly leave their pass when
// their queue is full and a later pass finishes them; a small bound on the
// bytes a reader queues makes it wait for its streams. Every stream still
// gets exactly its results in order.
func TestResumesSlowStreams(t *testing.T) {
	_, eg := runResumes(t, resumeCase{convs: 4, history: 60, streams: 80, live: 2, readers: 1, queue: 4, readerBytes: 8 << 10, slowEvery: 3})
	if n := eg.metric(t, "switchboard_egress_replay_streams_detached_total"); n == 0 {
		t.Error("no stream left a pass: the slow path was not exercised")
	}
	// The bound may be passed by one record given to every stream of its
	// conversation (20 here, under 2 KiB each).
	if peak, bound := eg.e.replays.peak.Load(), int64(8<<10+20*2<<10); peak > bound || peak < 8<<10 {
		t.Errorf("a reader queued at most %d bytes; want above its bound of 8 KiB (the slow streams fill it) and at most %d", peak, bound)
	}
}

// TestReplayWaitEndsAtShutdown: a stream waiting for the replay pool when
// egress stops ends at once with reason shutdown and a cursor, as a live
// stream does, instead of waiting for its replay.
func TestReplayWaitEndsAtShutdown(t *testing.T) {
	h := newHarness(t)
	cursors := h.produce(res("waiting", "", "r1", "run", 1, 0, true), res("waiting", "", "r2", "run", 1, 0, true))
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Kafka: kafkaconf.Config{Brokers: h.cluster.ListenAddrs()}, Topics: spec, Addr: freeAddr(t),
		Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), CursorSecret: []byte("s"),
		AllowAnonymous: true, RecentBytes: -1, ReplayWindow: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// The pool's reader does not get its client until the test says so.
	release := make(chan struct{})
	asked := make(chan struct{}, 1)
	e.replays.newClient = func(opts ...kgo.Opt) (*kgo.Client, error) {
		asked <- struct{}{}
		<-release
		return kgo.NewClient(opts...)
	}
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		stop()
		close(release)
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-e.ready
	from := e.cursors.seal("", "waiting", cursor{partition: cursors[0].partition, offset: -1})
	evs := make(chan []got, 1)
	go func() {
		rctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		out, _ := readSSE(rctx, t, srv.URL+"/v1/conversations/waiting/events", http.Header{"Last-Event-Id": {from}}, 0)
		evs <- out
	}()
	select {
	case <-asked: // the stream waits for the pool's reader
	case <-time.After(60 * time.Second):
		t.Fatal("the resume never asked the pool for a reader")
	}
	stop()
	out := <-evs
	if len(out) != 1 || out[0].name != "end" || out[0].label != endShutdown || out[0].cursor == "" {
		t.Fatalf("a stream waiting for its replay at shutdown got %v, want only end:shutdown with a cursor", out)
	}
	if c, err := e.cursors.open("", "waiting", out[0].cursor); err != nil || c.offset != -1 {
		t.Errorf("end cursor %v (%v), want the one it resumed from", c, err)
	}
}
