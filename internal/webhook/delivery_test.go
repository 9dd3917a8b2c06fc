package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

const (
	testResults    = "results"
	testDeadletter = "deadletter"
	testGroup      = "hooks"
)

// cluster is an embedded Kafka with the results and dead-letter topics,
// and a client that writes results and reads the group's offsets.
type cluster struct {
	t   *testing.T
	c   *kfake.Cluster
	cl  *kgo.Client
	adm *kadm.Client
}

func newCluster(t *testing.T, partitions int32) *cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, testResults, testDeadletter),
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "100"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(testResults))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &cluster{t: t, c: c, cl: cl, adm: kadm.NewClient(cl)}
}

// produce writes a final result per request ID, each to hook; the
// conversation is the ID up to its last "-". It returns their offsets.
func (k *cluster) produce(hook string, ids ...string) map[string]int64 {
	k.t.Helper()
	offsets := map[string]int64{}
	for _, id := range ids {
		conv := id[:strings.LastIndex(id, "-")]
		rec, err := envelope.EncodeResult(testResults, &pb.Result{RequestId: id, ConversationId: conv, Tenant: "t", Attempt: 1,
			WebhookUrl: hook, Body: &pb.Result_Final{Final: &pb.Final{Content: "answer " + id}}})
		if err != nil {
			k.t.Fatal(err)
		}
		r, err := k.cl.ProduceSync(k.t.Context(), rec).First()
		if err != nil {
			k.t.Fatal(err)
		}
		offsets[id] = r.Offset
	}
	return offsets
}

// committed returns the group's committed offset of partition 0 (-1: none).
func (k *cluster) committed() int64 {
	offs, err := k.adm.FetchOffsets(k.t.Context(), testGroup)
	if err != nil {
		return -1
	}
	if o, ok := offs.Lookup(testResults, 0); ok && o.Err == nil {
		return o.At
	}
	return -1
}

// run starts a Deliverer of cfg in the test group; stop ends it (also at
// cleanup) and waits for Run to return.
func (k *cluster) run(cfg Config) (w *Deliverer, reg *prometheus.Registry, stop func()) {
	k.t.Helper()
	cfg.Enabled, cfg.Group, cfg.SessionTimeout = true, testGroup, 2*time.Second
	cfg.Secret = []byte("secret-0123456789abc")
	cfg.Allow = []string{"http://127.0.0.1:*"}
	reg = prometheus.NewRegistry()
	w, err := New(cfg, []string{testResults}, testDeadletter, nil,
		[]kgo.Opt{kgo.SeedBrokers(k.c.ListenAddrs()...), kgo.FetchMaxWait(100 * time.Millisecond), kgo.HeartbeatInterval(200 * time.Millisecond)},
		reg, slog.New(slog.DiscardHandler))
	if err != nil {
		k.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(k.t.Context()))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					k.t.Errorf("Run: %v", err)
				}
			case <-time.After(60 * time.Second):
				k.t.Error("Run did not return within 60s of its context's end")
			}
		})
	}
	k.t.Cleanup(stop)
	return w, reg, stop
}

// hookServer is a receiver whose answer answer decides, recording calls.
type hookServer struct {
	mu     sync.Mutex
	calls  []string       // request IDs, in arrival order
	acked  map[string]int // request ID -> 2xx answers
	now    int            // calls in the handler now
	most   int            // most calls in the handler at once
	answer func(r *http.Request, id string) int
}

func newHookServer(t *testing.T, answer func(r *http.Request, id string) int) (*hookServer, *httptest.Server) {
	h := &hookServer{acked: map[string]int{}, answer: answer}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var res struct {
		RequestID string `json:"request_id"`
	}
	_ = json.Unmarshal(body, &res)
	h.mu.Lock()
	h.calls = append(h.calls, res.RequestID)
	h.now++
	h.most = max(h.most, h.now)
	h.mu.Unlock()
	status := h.answer(r, res.RequestID)
	h.mu.Lock()
	h.now--
	if status/100 == 2 {
		h.acked[res.RequestID]++
	}
	h.mu.Unlock()
	w.WriteHeader(status)
}

func (h *hookServer) snapshot() (calls []string, acked map[string]int, most int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	acked = map[string]int{}
	for k, v := range h.acked {
		acked[k] = v
	}
	return append([]string(nil), h.calls...), acked, h.most
}

// waitFor polls cond every 20ms for up to 30s.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCommitOnlyAfter2xx: the group's committed offset never passes a
// result its receiver has not answered 2xx, however many after it were;
// the next member of the group (here after a stop; after a kill -9 it
// starts from an older commit, see e2e TestWebhooksSurviveEgressKill)
// delivers exactly the unanswered results, in their conversation's order,
// and not the ones answered above the committed offset.
func TestCommitOnlyAfter2xx(t *testing.T) {
	k := newCluster(t, 1)
	var mu sync.Mutex
	holding := true
	release := make(chan struct{})
	h, srv := newHookServer(t, func(r *http.Request, id string) int {
		mu.Lock()
		hold := holding && strings.HasPrefix(id, "held-")
		mu.Unlock()
		if hold {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	defer close(release)
	_, _, stop := k.run(Config{MaxAttempts: 100, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	offsets := k.produce(srv.URL+"/hook", "a-0", "held-0", "b-0", "a-1", "held-1", "b-1", "a-2", "b-2")
	waitFor(t, "every result but the held conversation's answered, and held-0 in flight", func() error {
		calls, acked, _ := h.snapshot()
		if len(acked) < 6 || !strings.Contains(fmt.Sprint(calls), "held-0") {
			return fmt.Errorf("calls %v", calls)
		}
		return nil
	})
	waitFor(t, "the commit reaches held-0", func() error {
		if at := k.committed(); at != offsets["held-0"] {
			return fmt.Errorf("committed offset %d, want %d (held-0's)", at, offsets["held-0"])
		}
		return nil
	})
	for range 10 { // and stays there: held-0 is not answered
		if at := k.committed(); at > offsets["held-0"] {
			t.Fatalf("committed offset %d passes held-0 (offset %d), never answered 2xx", at, offsets["held-0"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	if at := k.committed(); at != offsets["held-0"] {
		t.Fatalf("committed offset after the stop %d, want %d (held-0's)", at, offsets["held-0"])
	}

	before, _, _ := h.snapshot()
	mu.Lock()
	holding = false
	mu.Unlock()
	k.run(Config{MaxAttempts: 100, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	waitFor(t, "the next member delivers the held conversation and commits the end", func() error {
		if at := k.committed(); at != int64(len(offsets)) {
			return fmt.Errorf("committed offset %d, want %d", at, len(offsets))
		}
		return nil
	})
	calls, acked, _ := h.snapshot()
	again := calls[len(before):]
	if fmt.Sprint(again) != "[held-0 held-1]" {
		t.Errorf("the next member delivered %v, want [held-0 held-1] (only what was never answered 2xx, in order)", again)
	}
	for id := range offsets {
		if acked[id] != 1 {
			t.Errorf("%s answered 2xx %d times, want 1", id, acked[id])
		}
	}
}

// TestDeadReceiverDoesNotStallOthers: a receiver that never answers holds
// at most MaxPerReceiver deliveries; the results of other receivers'
// conversations are delivered meanwhile, though the dead receiver's
// conversations outnumber MaxInFlight; once it answers, its waiting
// deliveries go on.
func TestDeadReceiverDoesNotStallOthers(t *testing.T) {
	k := newCluster(t, 2)
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	defer open()
	dead, deadSrv := newHookServer(t, func(r *http.Request, _ string) int {
		select {
		case <-release:
			return http.StatusNoContent
		case <-r.Context().Done():
			return http.StatusServiceUnavailable
		}
	})
	live, liveSrv := newHookServer(t, func(*http.Request, string) int { return http.StatusNoContent })
	w, _, _ := k.run(Config{MaxInFlight: 4, MaxPerReceiver: 2, Timeout: 5 * time.Minute})
	var deadIDs, liveIDs []string
	for c := range 6 {
		deadIDs = append(deadIDs, fmt.Sprintf("dead%d-0", c))
	}
	for c := range 5 {
		liveIDs = append(liveIDs, fmt.Sprintf("live%d-0", c), fmt.Sprintf("live%d-1", c))
	}
	k.produce(deadSrv.URL+"/hook", deadIDs...)
	k.produce(liveSrv.URL+"/hook", liveIDs...)
	waitFor(t, "the live receiver's results delivered while the dead one hangs", func() error {
		if _, acked, _ := live.snapshot(); len(acked) < len(liveIDs) {
			return fmt.Errorf("%d of %d delivered", len(acked), len(liveIDs))
		}
		return nil
	})
	if _, _, most := dead.snapshot(); most > 2 {
		t.Errorf("the dead receiver had %d deliveries at once, want at most MaxPerReceiver 2", most)
	}
	if n := testutil.ToFloat64(w.m.busy); n == 0 {
		t.Error("switchboard_egress_webhook_receiver_busy_total = 0; the dead receiver's waiting deliveries were not counted")
	}
	open()
	waitFor(t, "the dead receiver's waiting results delivered once it answers", func() error {
		if _, acked, _ := dead.snapshot(); len(acked) < len(deadIDs) {
			return fmt.Errorf("%d of %d delivered", len(acked), len(deadIDs))
		}
		return nil
	})
}

// TestReceiverOf: the paths of one endpoint share a receiver; default
// ports are filled in; scheme and host case do not matter.
func TestReceiverOf(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"https://Hooks.Example.com/a", "https://hooks.example.com:443/b"},
		{"http://10.0.0.1/x", "HTTP://10.0.0.1:80/y"},
		{"http://[2001:db8::1]:8080/", "http://[2001:DB8::1]:8080/z"},
	} {
		ua, _ := url.Parse(tc.a)
		ub, _ := url.Parse(tc.b)
		if receiverOf(ua) != receiverOf(ub) {
			t.Errorf("%s and %s: receivers %q and %q, want one", tc.a, tc.b, receiverOf(ua), receiverOf(ub))
		}
	}
	ua, _ := url.Parse("https://hooks.example.com/")
	ub, _ := url.Parse("https://hooks.example.com:8443/")
	if receiverOf(ua) == receiverOf(ub) {
		t.Error("different ports share a receiver")
	}
}
