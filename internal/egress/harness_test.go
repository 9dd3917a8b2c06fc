package egress

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

const (
	resultsTopic    = "switchboard.results"
	deadletterTopic = "switchboard.deadletter"
)

// harness is an embedded cluster with the results and dead-letter topics
// and a client that writes results and reads dead letters.
type harness struct {
	t       testing.TB
	cluster *kfake.Cluster
	client  *kgo.Client
	enc     envelope.Encoding // of the results produce writes
}

func newHarness(t testing.TB, opts ...kfake.Opt) *harness {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(4, resultsTopic, deadletterTopic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(deadletterTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &harness{t: t, cluster: c, client: cl}
}

// running is an egress started by harness.start.
type running struct {
	e        *Egress
	url      string // the HTTP API (httptest)
	grpcAddr string
	reg      *prometheus.Registry
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs an egress; mod adjusts its config. It is stopped at cleanup.
func (h *harness) start(mod func(*Config)) *running {
	h.t.Helper()
	spec, err := topicspec.Load("")
	if err != nil {
		h.t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg := Config{
		Addr:     freeAddr(h.t),
		GRPCAddr: freeAddr(h.t),
		Kafka:    kafkaconf.Config{Brokers: h.cluster.ListenAddrs()},
		Topics:   spec,
		Logger:   slog.New(slog.DiscardHandler),
		Registry: reg,
		// One secret for every instance, as in a deployment.
		CursorSecret: []byte("harness cursor secret"),
		// Tests without tenants see every result.
		AllowAnonymous: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("egress Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			h.t.Error("egress did not stop within 30s")
		}
		srv.CloseClientConnections()
		srv.Close()
	})
	select {
	case <-e.ready:
	case <-time.After(20 * time.Second):
		h.t.Fatal("egress not ready within 20s")
	}
	return &running{e: e, url: srv.URL, grpcAddr: cfg.GRPCAddr, reg: reg}
}

// produce writes results in order and returns their cursors.
func (h *harness) produce(results ...*pb.Result) []cursor {
	h.t.Helper()
	var out []cursor
	for _, res := range results {
		rec, err := envelope.EncodeResultAs(resultsTopic, res, h.enc)
		if err != nil {
			h.t.Fatal(err)
		}
		r, err := h.client.ProduceSync(h.t.Context(), rec).First()
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, cursor{partition: r.Partition, offset: r.Offset, at: r.Timestamp.UnixMilli(), ident: eventIdent(res)})
	}
	return out
}

func res(conv, tenant, req, run string, attempt int32, chunk int32, final bool) *pb.Result {
	r := &pb.Result{RequestId: req, ConversationId: conv, Tenant: tenant, RunId: run, Attempt: attempt}
	if final {
		r.Body = &pb.Result_Final{Final: &pb.Final{Content: "done " + req}}
	} else {
		r.Body = &pb.Result_Chunk{Chunk: &pb.Chunk{Index: chunk, Delta: fmt.Sprintf("%s/%s/%d/%d", req, run, attempt, chunk)}}
	}
	return r
}

// got is one event as a test sees it, whatever the transport.
type got struct {
	cursor string
	name   string // chunk, result, error, end
	label  string // chunk delta, final content, or end reason
}

func (g got) String() string { return g.name + ":" + g.label + "@" + g.cursor }

func labelOf(r *pb.Result) string {
	if c := r.GetChunk(); c != nil {
		return c.GetDelta()
	}
	return r.GetFinal().GetContent()
}

func labelOfAnswer(a *pb.Answer) string {
	if c := a.GetChunk(); c != nil {
		return c.GetDelta()
	}
	return a.GetFinal().GetContent()
}

// token is the cursor token the egress gives tenant's stream of conv.
// A located cursor (from produce) is in r's cluster.
func (r *running) token(tenant, conv string, c cursor) string {
	if c.located() {
		c.origin = r.e.origin
	}
	return r.e.cursors.seal(tenant, conv, c)
}

// readSSE reads url's events until the stream ends, ctx ends, or n events
// (0: no bound) have arrived.
func readSSE(ctx context.Context, t *testing.T, url string, header http.Header, n int) ([]got, int) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode
	}
	return parseSSE(t, resp.Body, n, nil), http.StatusOK
}

// parseSSE reads events from body until the stream ends or n events (0:
// no bound) have arrived, calling each (when not nil) for every event.
func parseSSE(t testing.TB, body io.Reader, n int, each func(got)) []got {
	t.Helper()
	var out []got
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev got
	var data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "" && ev.name != "":
			switch ev.name {
			case "end":
				var m map[string]string
				if err := json.Unmarshal([]byte(data), &m); err != nil {
					t.Errorf("end event %q: %v", data, err)
				}
				ev.label, ev.cursor = m["reason"], m["cursor"]
			case "restart":
				var r pb.Restart
				if err := protojson.Unmarshal([]byte(data), &r); err != nil {
					t.Fatalf("restart data %q: %v", data, err)
				}
				ev.label = r.GetRequestId()
			default:
				var a pb.Answer
				if err := protojson.Unmarshal([]byte(data), &a); err != nil {
					t.Fatalf("event data %q: %v", data, err)
				}
				ev.label = labelOfAnswer(&a)
			}
			out = append(out, ev)
			if each != nil {
				each(ev)
			}
			if ev.name == "end" || (n > 0 && len(out) >= n) {
				return out
			}
			ev, data = got{}, ""
		case strings.HasPrefix(line, "id: "):
			ev.cursor = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	return out
}

// metric sums the samples of the named counter or gauge whose labels
// include the given name=value pairs.
func (r *running) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
