package egress

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/webhook"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestJSONResults: results written as JSON (router-worker's
// --results-encoding json), alone or after protobuf ones on the same
// partition, reach SSE, WebSocket and gRPC streams as protobuf results do,
// from the live feed and from a Kafka replay (no in-memory index), with
// every repeat dropped.
func TestJSONResults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		recent int64
	}{
		{"live and index", 0},
		{"replay from kafka", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			eg := h.start(func(c *Config) { c.RecentBytes = tc.recent })
			// A protobuf answer first, then a JSON conversation: one
			// partition holds both while a deployment switches.
			h.produce(res("conv-j", "t1", "r0", "run0", 1, 0, true))
			h.enc = envelope.EncodingJSON
			want, _ := conversation(h, "conv-j")
			want = append([]string{"result:done r0"}, want...)
			all := append(slices.Clip(want), "end:done")
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			sse, status := readSSE(ctx, t, eg.url+"/v1/conversations/conv-j/events?request_id=r2", nil, 0)
			if status != http.StatusOK || !slices.Equal(labels(sse), all) {
				t.Errorf("SSE: status %d, events\n%v\nwant\n%v", status, labels(sse), all)
			}
			ws, code, err := readWS(ctx, t, "ws"+strings.TrimPrefix(eg.url, "http")+"/v1/conversations/conv-j/ws?request_id=r2")
			if err != nil || code != websocket.StatusNormalClosure || !slices.Equal(labels(ws), all) {
				t.Errorf("WebSocket: err %v, close %v, events\n%v\nwant\n%v", err, code, labels(ws), all)
			}
			gr, err := readGRPC(ctx, t, eg.grpcAddr, &pb.SubscribeRequest{ConversationId: "conv-j", RequestId: "r2"}, "")
			if err != nil || !slices.Equal(labels(gr), all) {
				t.Errorf("gRPC: err %v, events\n%v\nwant\n%v", err, labels(gr), all)
			}
		})
	}
}

// TestWebhookJSONResults: webhooks deliver terminal results written as
// JSON, once each, as they deliver protobuf ones.
func TestWebhookJSONResults(t *testing.T) {
	const secret = "default-secret-0123456789"
	rc, srv := newReceiver(t, func(string, int) int { return http.StatusOK })
	rc.secret["/ok"] = webhook.TenantKey([]byte(secret), "t")
	h := newHarness(t)
	h.start(func(c *Config) {
		c.Webhooks = webhook.Config{Enabled: true, Allow: []string{srv.URL + "/"}, Secret: []byte(secret),
			MaxAttempts: 3, Backoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}
	})
	h.produce(hookFinal("conv-w", "t", "w1", srv.URL+"/ok"))
	h.enc = envelope.EncodingJSON
	h.produce(res("conv-w", "t", "w2", "run", 1, 0, false), hookFinal("conv-w", "t", "w2", srv.URL+"/ok"),
		hookFinal("conv-w", "t", "w2", srv.URL+"/ok")) // a repeated terminal
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	waitFor(ctx, t, "both deliveries", func() bool { return len(rc.requests("/ok")) == 2 })
	if got := rc.requests("/ok"); !slices.Equal(got, []string{"w1", "w2"}) {
		t.Errorf("delivered %v, want [w1 w2]", got)
	}
}
