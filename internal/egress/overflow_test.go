package egress

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// dialNonReader opens an SSE stream on addr that never reads, with a
// small receive buffer, so its backlog builds on the server's side.
func dialNonReader(t testing.TB, addr, conv string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /v1/conversations/%s/events HTTP/1.1\r\nHost: x\r\n\r\n", conv)
	return c
}

// probe is a reading client whose delivery latency is measured: the time
// from producing a result to reading its event.
type probe struct {
	mu   sync.Mutex
	sent map[string]time.Time
	got  chan time.Duration
}

func startProbe(ctx context.Context, t testing.TB, url string) *probe {
	p := &probe{sent: map[string]time.Time{}, got: make(chan time.Duration, 1024)}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/conversations/probe/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer resp.Body.Close()
		parseSSE(t, resp.Body, 0, func(g got) {
			p.mu.Lock()
			at, ok := p.sent[g.label]
			p.mu.Unlock()
			if ok {
				p.got <- time.Since(at)
			}
		})
	}()
	return p
}

// measure produces n probe results, one every gap, and returns the p99
// of their delivery latency.
func (p *probe) measure(t testing.TB, h *harness, tag string, n int, gap time.Duration) time.Duration {
	t.Helper()
	var lat []time.Duration
	for i := range n {
		r := res("probe", "", fmt.Sprintf("%s-%d", tag, i), "run", 1, int32(i), false)
		p.mu.Lock()
		p.sent[labelOf(r)] = time.Now()
		p.mu.Unlock()
		h.produce(r)
		select {
		case d := <-p.got:
			lat = append(lat, d)
		case <-time.After(10 * time.Second):
			t.Fatalf("probe %s-%d not delivered within 10s", tag, i)
		}
		time.Sleep(gap)
	}
	slices.Sort(lat)
	return lat[(len(lat)*99)/100]
}

func heapInUse() uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestNonReadingClientsOverflow: 2,000 SSE clients that never read (400
// under the race detector, which make test uses) are each closed with the
// end event "overflow" soon after their socket's bounded backlog fills
// (not after gigabytes of kernel buffers), a reading client is still
// served meanwhile, and the streams' memory and goroutines are returned.
// What they cost the reading client's latency is a measurement, so it is
// BenchmarkNonReadingClients's (a timed assertion here would only measure
// the shared machine).
func TestNonReadingClientsOverflow(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,000 streams")
	}
	nSlow := 2000
	if raceEnabled {
		nSlow = 400
	}
	quiet, noisy := nonReadingClients(t, nSlow, 20, time.Second)
	t.Logf("probe p99: quiet %v, with %d non-reading clients %v", quiet, nSlow, noisy)
}

// BenchmarkNonReadingClients measures what 2,000 SSE clients that never
// read cost a reading client: the p99 of its delivery latency while they
// sit stalled, against the same probe on a quiet egress. docs/BENCHMARKS.md
// quotes the median ratio of
//
//	go test -run '^$' -bench NonReadingClients -benchtime 1x -count 5 ./internal/egress/
func BenchmarkNonReadingClients(b *testing.B) {
	var ratios []float64
	var quiets, noisys []time.Duration
	for b.Loop() {
		quiet, noisy := nonReadingClients(b, 2000, 100, 2500*time.Millisecond)
		quiets, noisys = append(quiets, quiet), append(noisys, noisy)
		ratios = append(ratios, float64(noisy)/float64(quiet))
	}
	slices.Sort(ratios)
	slices.Sort(quiets)
	slices.Sort(noisys)
	b.ReportMetric(float64(quiets[len(quiets)/2])/1e6, "quiet-p99-ms")
	b.ReportMetric(float64(noisys[len(noisys)/2])/1e6, "stalled-p99-ms")
	b.ReportMetric(ratios[len(ratios)/2], "p99-ratio")
}

// nonReadingClients opens nSlow SSE streams that never read over 100
// conversations, floods them until every one overflows, and checks that
// they all end with overflow and give back their goroutines and memory.
// It returns the p99 delivery latency of a reading probe (probes results)
// before the flood and while the slow clients sit stalled: writeTimeout
// (egress's) must leave time for the probes.
func nonReadingClients(t testing.TB, nSlow, probes int, writeTimeout time.Duration) (quiet, noisy time.Duration) {
	const nConv, events, eventBytes = 100, 6, 16 << 10
	h := newHarness(t)
	eg := h.start(func(c *Config) {
		c.WriteTimeout = writeTimeout
		c.RecentBytes = -1 // memory measured below is the streams', not the index's
	})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	addr := eg.e.cfg.Addr
	p := startProbe(ctx, t, "http://"+addr)
	waitFor(ctx, t, "the probe stream", func() bool { return eg.metric(t, "switchboard_egress_subscribers") == 1 })
	p.measure(t, h, "warm", 20, 5*time.Millisecond)
	quiet = p.measure(t, h, "quiet", probes, 5*time.Millisecond)

	goroutines, heap0 := runtime.NumGoroutine(), heapInUse()
	conns := make([]net.Conn, 0, nSlow)
	for i := range nSlow {
		conns = append(conns, dialNonReader(t, addr, fmt.Sprintf("slow-%d", i%nConv)))
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	waitFor(ctx, t, "every stream to open", func() bool { return int(eg.metric(t, "switchboard_egress_subscribers")) == nSlow+1 })
	heapOpen := heapInUse()

	// Fill the slow clients' sockets, then measure the probe while they
	// sit stalled (their streams wait for a backlog that never drains),
	// which is what non-reading clients cost the others.
	big := strings.Repeat("x", eventBytes)
	for i := range events {
		for c := range nConv {
			r := res(fmt.Sprintf("slow-%d", c), "", "r", "run", 1, int32(i), false)
			r.GetChunk().Delta = big
			h.client.Produce(ctx, mustEncode(t, r), nil)
		}
	}
	if err := h.client.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the flood to be written", func() bool {
		sent := eg.metric(t, "switchboard_egress_events_sent_total")
		time.Sleep(100 * time.Millisecond)
		return eg.metric(t, "switchboard_egress_events_sent_total") == sent
	})
	noisy = p.measure(t, h, "noisy", probes, 5*time.Millisecond)
	waitFor(ctx, t, "every slow stream to overflow", func() bool {
		return int(eg.metric(t, "switchboard_egress_subscriber_overflows_total")) == nSlow
	})
	waitFor(ctx, t, "the slow streams to close", func() bool { return eg.metric(t, "switchboard_egress_subscribers") == 1 })

	// A slow client that finally reads finds its events, then end:overflow.
	for _, c := range conns[:20] {
		if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		evs := parseSSE(t, resp.Body, 0, nil)
		if len(evs) == 0 || evs[len(evs)-1].name != "end" || evs[len(evs)-1].label != endOverflow {
			t.Fatalf("a non-reading client's last events: %v, want end:overflow", tailOf(evs))
		}
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines+20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	heap1 := heapInUse()
	t.Logf("heap in use: %d MiB before, %d MiB with the streams open, %d MiB after they closed", heap0>>20, heapOpen>>20, heap1>>20)
	if n := runtime.NumGoroutine(); n > goroutines+20 {
		t.Errorf("goroutines: %d before the slow clients, %d after", goroutines, n)
	}
	// The flood stays in the embedded broker; allow for it.
	if heap1 > heap0+uint64(nConv*events*eventBytes)*3+(heapOpen-heap0)/4 {
		t.Errorf("heap in use %d MiB after the streams closed, %d MiB before: not returned", heap1>>20, heap0>>20)
	}
	return quiet, noisy
}

// TestStreamCaps: streams beyond the conversation's or the tenant's cap
// are refused with 429 too_many_streams; a slot comes back when a stream
// closes.
func TestStreamCaps(t *testing.T) {
	h := newHarness(t)
	eg := h.start(func(c *Config) {
		c.MaxStreamsPerConversation = 2
		c.MaxStreamsPerTenant = 3
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	open := func(conv string) (*http.Response, int) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, eg.url+"/v1/conversations/"+conv+"/events", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, resp.StatusCode
	}
	var held []*http.Response
	for _, conv := range []string{"a", "a", "a", "b", "c"} {
		resp, st := open(conv)
		want := http.StatusOK
		if (conv == "a" && len(held) == 2) || conv == "c" {
			want = http.StatusTooManyRequests
		}
		if st != want {
			t.Fatalf("stream of %s after %d open: status %d, want %d", conv, len(held), st, want)
		}
		if st == http.StatusOK {
			held = append(held, resp)
		} else {
			resp.Body.Close()
		}
	}
	held[0].Body.Close()
	waitFor(ctx, t, "the closed stream's slot", func() bool {
		resp, st := open("c")
		defer resp.Body.Close()
		return st == http.StatusOK
	})
	for _, r := range held[1:] {
		r.Body.Close()
	}
	if got := eg.metric(t, "switchboard_egress_streams_refused_total"); got < 2 {
		t.Errorf("streams refused: %v, want at least 2", got)
	}
}

func mustEncode(t testing.TB, r *pb.Result) *kgo.Record {
	t.Helper()
	rec, err := envelope.EncodeResult(resultsTopic, r)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestNonReadingWebSocketOverflows: a WebSocket client that stops reading
// is ended the same way: its backlog stays full for the write timeout,
// and it finds {"event":"end","reason":"overflow"} when it reads again.
func TestNonReadingWebSocketOverflows(t *testing.T) {
	h := newHarness(t)
	eg := h.start(func(c *Config) { c.WriteTimeout = time.Second })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	d := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) }); err != nil {
			return err
		}
		return serr
	}}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	conn, _, err := websocket.Dial(ctx, "ws://"+eg.e.cfg.Addr+"/v1/conversations/ws-slow/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	waitFor(ctx, t, "the stream", func() bool { return eg.metric(t, "switchboard_egress_subscribers", "transport", "websocket") == 1 })
	big := strings.Repeat("x", 16<<10)
	var recs []*pb.Result
	for i := range 16 {
		r := res("ws-slow", "", "r", "run", 1, int32(i), false)
		r.GetChunk().Delta = big
		recs = append(recs, r)
	}
	h.produce(recs...)
	waitFor(ctx, t, "the overflow", func() bool { return eg.metric(t, "switchboard_egress_subscriber_overflows_total") == 1 })
	var last []byte
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusTryAgainLater {
				t.Errorf("closed with %v, want 1013", err)
			}
			break
		}
		last = data
	}
	if !strings.Contains(string(last), `"reason":"overflow"`) {
		t.Errorf("last message %.200s, want the end with reason overflow", last)
	}
}
