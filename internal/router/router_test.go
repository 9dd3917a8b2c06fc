package router

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/modelsim"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	interactive = "switchboard.requests.interactive"
	batch       = "switchboard.requests.batch"
	results     = "switchboard.results"
	deadletter  = "switchboard.deadletter"
)

type harness struct {
	t       *testing.T
	cluster *kfake.Cluster
	client  *kgo.Client // produces requests, reads results and dead letters
	hits    atomic.Int64
	router  *Router // the last one run started
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, interactive, batch, results, deadletter))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(results, deadletter), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &harness{t: t, cluster: c, client: cl}
}

// backend serves h on loopback and counts the calls.
func (h *harness) backend(handler http.Handler) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		handler.ServeHTTP(w, r)
	}))
	h.t.Cleanup(srv.Close)
	return srv.URL + "/v1"
}

func (h *harness) modelsim(latency time.Duration) string {
	sim, err := modelsim.New(modelsim.Config{BaseLatency: latency, Jitter: latency / 2}, slog.New(slog.DiscardHandler))
	if err != nil {
		h.t.Fatal(err)
	}
	return h.backend(sim.Handler())
}

// run starts a router against baseURL and returns a function that stops it
// and returns Run's error.
func (h *harness) run(baseURL string, mod func(*Config)) func() error {
	h.t.Helper()
	spec, err := topicspec.Load("")
	if err != nil {
		h.t.Fatal(err)
	}
	cfg := Config{
		Kafka:        kafkaconf.Config{Brokers: h.cluster.ListenAddrs()},
		Topics:       spec,
		Routing:      Routing{Backends: []Backend{{Name: "sim", BaseURL: baseURL, Models: []string{"sim"}, Timeout: 10 * time.Second}}},
		RetryBackoff: 10 * time.Millisecond,
		Logger:       slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.router = r
	ctx, cancel := context.WithCancel(h.t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return fmt.Errorf("router did not stop within 30s")
		}
	}
	h.t.Cleanup(func() {
		if err := stop(); err != nil {
			h.t.Log(err)
		}
	})
	return stop
}

func request(conv string, i int, stream bool) *pb.Request {
	return &pb.Request{
		RequestId:      fmt.Sprintf("%s-%d", conv, i),
		ConversationId: conv,
		Lane:           envelope.LaneInteractive,
		Model:          "sim",
		Stream:         stream,
		MaxTokens:      16,
		Messages:       []*pb.Message{{Role: "user", Content: fmt.Sprintf("%s says %d", conv, i)}},
		Metadata:       map[string]string{"i": fmt.Sprint(i)},
	}
}

func (h *harness) produce(reqs ...*pb.Request) {
	h.t.Helper()
	for _, req := range reqs {
		rec, err := envelope.EncodeRequest(interactive, req)
		if err != nil {
			h.t.Fatal(err)
		}
		if err := h.client.ProduceSync(h.t.Context(), rec).FirstErr(); err != nil {
			h.t.Fatal(err)
		}
	}
}

// collect reads results and dead letters until terminals terminal results
// have arrived.
func (h *harness) collect(terminals int) (res []*pb.Result, dls []*pb.DeadLetter) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), 60*time.Second)
	defer cancel()
	n := 0
	for n < terminals {
		fetches := h.client.PollFetches(ctx)
		if ctx.Err() != nil {
			h.t.Fatalf("got %d of %d terminal results before the time limit", n, terminals)
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			if rec.Topic == deadletter {
				var dl pb.DeadLetter
				if err := proto.Unmarshal(rec.Value, &dl); err != nil {
					h.t.Errorf("dead letter: %v", err)
				}
				dls = append(dls, &dl)
				return
			}
			r, err := envelope.DecodeResult(rec)
			if err != nil {
				h.t.Fatalf("result: %v", err)
			}
			if r.GetChunk() == nil {
				n++
			}
			res = append(res, r)
		})
	}
	return res, dls
}

func TestStreamsAndAnswersInOrder(t *testing.T) {
	h := newHarness(t)
	stop := h.run(h.modelsim(2*time.Millisecond), nil)
	const convs, per = 8, 6
	for i := range per {
		for c := range convs {
			h.produce(request(fmt.Sprintf("c%d", c), i, i%2 == 0))
		}
	}
	res, dls := h.collect(convs * per)
	if len(dls) != 0 {
		t.Errorf("dead letters: %v", dls)
	}
	next := map[string]int{}
	content := map[string]*strings.Builder{}
	for _, r := range res {
		conv := r.GetConversationId()
		if want := fmt.Sprintf("%s-%d", conv, next[conv]); r.GetRequestId() != want {
			t.Fatalf("conversation %s: result of %s, want %s", conv, r.GetRequestId(), want)
		}
		if r.GetMetadata()["i"] != fmt.Sprint(next[conv]) {
			t.Errorf("metadata = %v, want it copied from the request", r.GetMetadata())
		}
		if content[conv] == nil {
			content[conv] = &strings.Builder{}
		}
		switch b := r.GetBody().(type) {
		case *pb.Result_Chunk:
			content[conv].WriteString(b.Chunk.GetDelta())
		case *pb.Result_Final:
			if next[conv]%2 == 0 && content[conv].String() != b.Final.GetContent() {
				t.Errorf("%s: chunks %q != final %q", r.GetRequestId(), content[conv], b.Final.GetContent())
			}
			if b.Final.GetBackend() != "sim" || b.Final.GetUsage().GetCompletionTokens() == 0 || b.Final.GetTimings().GetCompletedAt() == nil {
				t.Errorf("final = %v, want backend, usage and timings", b.Final)
			}
			content[conv].Reset()
			next[conv]++
		default:
			t.Fatalf("%s: %v", r.GetRequestId(), r)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Everything finished is committed: the group's offsets reach the end.
	adm := kadm.NewClient(h.client)
	committed, err := adm.FetchOffsets(t.Context(), "switchboard-router")
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(t.Context(), interactive)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		c, _ := committed.Lookup(interactive, o.Partition)
		if o.Offset > 0 && c.At != o.Offset {
			t.Errorf("partition %d: committed %d, end %d", o.Partition, c.At, o.Offset)
		}
	})
}

func TestUnprocessableWork(t *testing.T) {
	h := newHarness(t)
	h.run(h.modelsim(time.Millisecond), nil)

	poison := &kgo.Record{Topic: interactive, Key: []byte("p"), Value: []byte("\xffnot protobuf")}
	if err := h.client.ProduceSync(t.Context(), poison).FirstErr(); err != nil {
		t.Fatal(err)
	}
	unknown := request("p", 1, false)
	unknown.Model = "nope"
	expired := request("p", 2, true)
	expired.Deadline = timestamppb.New(time.Now().Add(-time.Second))
	h.produce(unknown, expired, request("p", 3, false))

	res, dls := h.collect(3)
	want := []string{envelope.ReasonUnknownModel, CodeDeadlineExceeded, ""}
	for i, r := range res {
		if got := r.GetError().GetCode(); got != want[i] {
			t.Errorf("result %d (%s): error code %q, want %q", i, r.GetRequestId(), got, want[i])
		}
	}
	reasons := map[string]bool{}
	for _, dl := range dls {
		reasons[dl.GetReason()] = true
	}
	if !reasons[envelope.ReasonDecode] || !reasons[envelope.ReasonUnknownModel] || len(dls) != 2 {
		t.Errorf("dead letters %v, want decode_error and unknown_model", dls)
	}
	if calls := h.hits.Load(); calls != 1 {
		t.Errorf("backend called %d times, want 1: only the good request may call it", calls)
	}
}

func TestRetriesThenDeadLetters(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		wantCalls int64
	}{
		{"retryable 503", http.StatusServiceUnavailable, 3},
		{"not retryable 400", http.StatusBadRequest, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			url := h.backend(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				fmt.Fprint(w, `{"error":{"message":"nope","type":"test"}}`)
			}))
			h.run(url, func(c *Config) { c.MaxAttempts = 3 })
			h.produce(request("r", 0, true))
			res, dls := h.collect(1)
			last := res[len(res)-1]
			if last.GetError().GetCode() != CodeBackendUnavailable {
				t.Fatalf("result = %v, want a backend_unavailable error", last)
			}
			if got := h.hits.Load(); got != tt.wantCalls {
				t.Errorf("backend called %d times, want %d", got, tt.wantCalls)
			}
			if last.GetAttempt() != int32(tt.wantCalls) {
				t.Errorf("attempt = %d, want %d", last.GetAttempt(), tt.wantCalls)
			}
			// The dead letter follows the error result; wait for it.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			for len(dls) == 0 && ctx.Err() == nil {
				h.client.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
					var dl pb.DeadLetter
					if rec.Topic == deadletter && proto.Unmarshal(rec.Value, &dl) == nil {
						dls = append(dls, &dl)
					}
				})
			}
			if len(dls) != 1 || dls[0].GetReason() != envelope.ReasonBackend || dls[0].GetAttempts() != int32(tt.wantCalls) {
				t.Errorf("dead letters = %v, want one backend_error after %d attempts", dls, tt.wantCalls)
			}
		})
	}
}

func TestParseBackends(t *testing.T) {
	t.Setenv("SIM_URL", "http://127.0.0.1:1/v1")
	tests := []struct {
		name, yaml, wantErr string
	}{
		{"ok with env", "backends:\n  - name: a\n    base_url: ${SIM_URL}\n    models: [sim]\n", ""},
		{"default", "backends:\n  - name: a\n    base_url: ${UNSET_VAR_X:-http://h/v1}\n    models: [sim]\n", ""},
		{"none", "backends: []\n", "no backends"},
		{"unknown field", "backends:\n  - name: a\n    url: x\n", "url"},
		{"bad url", "backends:\n  - name: a\n    base_url: ftp://x\n    models: [m]\n", "base_url"},
		{"no models", "backends:\n  - name: a\n    base_url: http://x\n", "models"},
		{"duplicate", "backends:\n  - {name: a, base_url: 'http://x', models: [m]}\n  - {name: a, base_url: 'http://y', models: [m]}\n", "twice"},
		{"everything", "backends:\n  - {name: a, base_url: 'http://x', models: [m, n], weight: 2, max_concurrency: 8, requests_per_minute: 60, tokens_per_minute: 1000, connect_timeout: 1s, first_token_timeout: 2s, timeout: 3s, api_key_env: SIM_URL}\n" +
			"aliases: {fast: m}\nfallbacks: {m: [n]}\ntenants: {default: {requests_per_minute: 10}, overrides: {t1: {tokens_per_minute: 5}}}\nbreaker: {failures: 2, open_for: 1s, probes: 2}\n", ""},
		{"unset api key", "backends:\n  - {name: a, base_url: 'http://x', models: [m], api_key_env: UNSET_VAR_X}\n", "UNSET_VAR_X is not set"},
		{"negative weight", "backends:\n  - {name: a, base_url: 'http://x', models: [m], weight: -1}\n", "negative"},
		{"alias shadows", "backends:\n  - {name: a, base_url: 'http://x', models: [m, n]}\naliases: {m: n}\n", "alias"},
		{"alias to nothing", "backends:\n  - {name: a, base_url: 'http://x', models: [m]}\naliases: {x: y}\n", "alias"},
		{"fallback to nothing", "backends:\n  - {name: a, base_url: 'http://x', models: [m]}\nfallbacks: {m: [q]}\n", "fallbacks"},
		{"fallback to itself", "backends:\n  - {name: a, base_url: 'http://x', models: [m]}\nfallbacks: {m: [m]}\n", "itself"},
		{"negative tenant limit", "backends:\n  - {name: a, base_url: 'http://x', models: [m]}\ntenants: {overrides: {t: {requests_per_minute: -1}}}\n", "tenant t"},
		{"negative breaker", "backends:\n  - {name: a, base_url: 'http://x', models: [m]}\nbreaker: {failures: -1}\n", "breaker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := ParseBackends([]byte(tt.yaml))
			bs := rt.Backends
			if tt.wantErr == "" {
				if err != nil || len(bs) != 1 || !strings.HasPrefix(bs[0].BaseURL, "http://") {
					t.Fatalf("ParseBackends = %v, %v", bs, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

// TestResultTooLargeIsDeadLettered: an answer bigger than the results
// topic accepts gets a small error result and a dead letter instead of
// blocking its conversation with endless retries.
func TestResultTooLargeIsDeadLettered(t *testing.T) {
	h := newHarness(t)
	big := strings.Repeat("x ", 700_000) // 1.4 MB of content
	url := h.backend(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}]}`, big)
	}))
	h.run(url, func(c *Config) {
		spec := c.Topics.WithPrefix(c.Topics.Prefix)
		for i := range spec.Topics {
			spec.Topics[i].Configs["max.message.bytes"] = "1000000"
		}
		c.Topics = spec
	})
	h.produce(request("big", 0, false), request("big", 1, false))
	res, _ := h.collect(1)
	if got := res[0].GetError().GetCode(); got != envelope.ReasonTooLarge {
		t.Fatalf("first result = %v, want a %s error", res[0], envelope.ReasonTooLarge)
	}
	if got := h.hits.Load(); got < 1 {
		t.Errorf("backend hits = %d", got)
	}
}

// TestExactlyOnceCommitsResultsWithOffsets: in exactly-once mode a
// read_committed reader sees each terminal result once, streamed or not,
// and the offsets are committed with them.
func TestExactlyOnceCommitsResultsWithOffsets(t *testing.T) {
	h := newHarness(t)
	committed, err := kgo.NewClient(kgo.SeedBrokers(h.cluster.ListenAddrs()...),
		kgo.ConsumeTopics(results), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer committed.Close()
	h.client = committed
	stop := h.run(h.modelsim(time.Millisecond), func(c *Config) { c.ExactlyOnce = true })
	const n = 40
	for i := range n {
		h.produce(request(fmt.Sprintf("e%d", i%4), i, i%3 == 0))
	}
	res, _ := h.collect(n)
	seen := map[string]int{}
	for _, r := range res {
		if r.GetChunk() == nil {
			seen[r.GetRequestId()]++
		}
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s: %d terminal results, want 1", id, c)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(committed)
	offs, err := adm.FetchOffsets(t.Context(), "switchboard-router")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	offs.Each(func(o kadm.OffsetResponse) { total += o.At })
	if total != n {
		t.Errorf("committed offsets add up to %d, want %d", total, n)
	}
}
