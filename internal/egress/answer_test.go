package egress

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestClientsSeeOnlyTheirAnswer: events carry the answer, never the
// record's tenant, run or webhook target; the backend and timings only for
// a tenant whose show list has them; the stream's header names no
// partition and cursors are tokens, not positions.
func TestClientsSeeOnlyTheirAnswer(t *testing.T) {
	tenants, err := tenant.Parse([]byte("tenants:\n" +
		"  - name: a\n    key_sha256: [" + tenant.HashKey(keyA) + "]\n" +
		"  - name: b\n    key_sha256: [" + tenant.HashKey(keyB) + "]\n    show: [backend, timings]\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	eg := h.start(func(c *Config) { c.Tenants = tenants })
	final := func(tn, req string) *pb.Result {
		r := res("conv-x", tn, req, "run-secret-id", 1, 0, true)
		r.WebhookUrl = "https://hooks.example.com/secret-path"
		r.GetFinal().Backend = "vllm-internal-7"
		r.GetFinal().Timings = &pb.Timings{AcceptedAt: timestamppb.Now(), CompletedAt: timestamppb.Now()}
		return r
	}
	h.produce(final("a", "ra"), final("b", "rb"))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for _, tc := range []struct {
		key, req string
		shown    bool
	}{{keyA, "ra", false}, {keyB, "rb", true}} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, eg.url+"/v1/conversations/conv-x/events?request_id="+tc.req, nil)
		req.Header.Set("Authorization", "Bearer "+tc.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body strings.Builder
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			body.WriteString(sc.Text() + "\n")
		}
		resp.Body.Close()
		text := body.String()
		for _, secret := range []string{"run-secret-id", "secret-path", `"tenant"`, "run_id", "webhook_url", "partition"} {
			if strings.Contains(text, secret) {
				t.Errorf("tenant of %s sees %q:\n%s", tc.req, secret, text)
			}
		}
		if strings.Contains(text, "vllm-internal-7") != tc.shown || strings.Contains(text, "accepted_at") != tc.shown {
			t.Errorf("tenant of %s: backend and timings shown = %v, want %v:\n%s", tc.req, !tc.shown, tc.shown, text)
		}
		var data string
		for _, line := range strings.Split(text, "\n") {
			if strings.HasPrefix(line, "id: ") && !strings.HasPrefix(line, "id: "+cursorPrefix) && !strings.HasPrefix(line, "id: "+cursorPrefixV2) {
				t.Errorf("cursor %q is not a token", line)
			}
			if strings.HasPrefix(line, "data: {\"request_id\"") {
				data = line[len("data: "):]
			}
		}
		var a map[string]any
		if err := json.Unmarshal([]byte(data), &a); err != nil || a["request_id"] != tc.req || a["final"] == nil {
			t.Errorf("answer %q: %v", data, err)
		}
	}
}

// TestRestartEvent: a request answered again (a worker restarted) shows a
// restart event before its new answer, on every transport.
func TestRestartEvent(t *testing.T) {
	h := newHarness(t)
	eg := h.start(nil)
	h.produce(
		res("rs", "", "r1", "run1", 1, 0, false),
		res("rs", "", "r1", "run2", 1, 0, false),
		res("rs", "", "r1", "run2", 1, 0, true),
	)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := []string{"chunk:r1/run1/1/0", "restart:r1", "chunk:r1/run2/1/0", "result:done r1", "end:done"}
	sse, _ := readSSE(ctx, t, eg.url+"/v1/conversations/rs/events?request_id=r1", nil, 0)
	ws, _, _ := readWS(ctx, t, "ws"+strings.TrimPrefix(eg.url, "http")+"/v1/conversations/rs/ws?request_id=r1")
	gr, _ := readGRPC(ctx, t, eg.grpcAddr, &pb.SubscribeRequest{ConversationId: "rs", RequestId: "r1"}, "")
	for name, evs := range map[string][]got{"SSE": sse, "WebSocket": ws, "gRPC": gr} {
		if got := labels(evs); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

// TestAnonymousNeedsConsent: without a tenants file egress refuses to
// start unless told to run open.
func TestAnonymousNeedsConsent(t *testing.T) {
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Kafka: kafkaconf.Config{Brokers: []string{"127.0.0.1:1"}}, Topics: spec, Logger: slog.New(slog.DiscardHandler)}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "--allow-anonymous") {
		t.Errorf("New without tenants: %v, want a refusal naming --allow-anonymous", err)
	}
	cfg.AllowAnonymous = true
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New with AllowAnonymous: %v", err)
	}
	e.client.Close()
}
