package ingress

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func dialWS(ctx context.Context, t *testing.T, url, key string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
	return websocket.Dial(ctx, "ws"+url[len("http"):]+"/v1/ws", &websocket.DialOptions{HTTPHeader: h})
}

// TestWebSocketManyInFlight sends many submits on one socket without
// waiting, plus bad frames: every frame is answered once, matched by id,
// and the socket stays open.
func TestWebSocketManyInFlight(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	srv := httptest.NewServer(in.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	if _, res, err := dialWS(ctx, t, srv.URL, ""); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("upgrade without a key: %v %v, want 401", res, err)
	}
	c, _, err := dialWS(ctx, t, srv.URL, devKey)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	const n = 100
	for i := range n {
		f := fmt.Sprintf(`{"type":"submit","id":"s%d","conversation_id":"ws-%d","model":"sim","messages":[{"role":"user","content":"hi %d"}]}`, i, i%7, i)
		if err := c.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	bad := map[string]string{
		"b1": `{"type":"submit","id":"b1","conversation_id":"x","model":"sim","messages":[{"role":"nobody","content":"hi"}]}`,
		"b2": `{"type":"submit","id":"b2","conversation_id":"x","model":"sim","messages":[],"surprise":1}`,
		"b3": `{"type":"hello","id":"b3"}`,
		"":   `not json`,
	}
	for _, f := range bad {
		_ = c.Write(ctx, websocket.MessageText, []byte(f))
	}
	acks := map[string]ack{}
	errs := map[string]apiError{}
	for range n + len(bad) {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read after %d acks and %d errors: %v", len(acks), len(errs), err)
		}
		var rep wsReply
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Fatal(err)
		}
		switch rep.Type {
		case "ack":
			if _, dup := acks[rep.ID]; dup || rep.Ack == nil {
				t.Fatalf("ack %s twice or empty: %s", rep.ID, data)
			}
			acks[rep.ID] = *rep.Ack
		case "error":
			errs[rep.ID] = *rep.Error
		default:
			t.Fatalf("unexpected frame %s", data)
		}
	}
	for i := range n {
		a, ok := acks[fmt.Sprintf("s%d", i)]
		if !ok || a.ConversationID != fmt.Sprintf("ws-%d", i%7) {
			t.Errorf("submit s%d: ack %+v", i, a)
		}
	}
	if errs["b1"].Field != "messages[0].role" || errs["b2"].Code != "invalid_json" || errs["b3"].Field != "type" || errs[""].Code != "invalid_json" {
		t.Errorf("errors = %+v", errs)
	}
}

// TestWebSocketShutdown: a stop answers what is in flight and closes the
// socket with 1001.
func TestWebSocketShutdown(t *testing.T) {
	in := newIngress(t, newCluster(t), func(c *Config) { c.Addr = freeAddr(t) })
	r := runIngress(t, in)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, _, err := dialWS(ctx, t, r.url, devKey)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := range 10 {
		_ = c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"submit","id":"%d","conversation_id":"c","model":"sim","messages":[{"role":"user","content":"hi"}]}`, i))
	}
	// Stop once the first answer is in: later submits may be answered
	// (ack, or unavailable) or, if not yet read, get no answer (not accepted).
	answered := 0
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	answered++
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	for {
		_, data, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusGoingAway {
				t.Errorf("socket ended with %v, want close status 1001", err)
			}
			break
		}
		var rep wsReply
		if err := json.Unmarshal(data, &rep); err != nil {
			t.Errorf("answer %q: %v", data, err)
		}
		if rep.Type != "ack" && (rep.Type != "error" || rep.Error.Code != "unavailable") {
			t.Errorf("answer during shutdown: %s", data)
		}
		answered++
	}
	if answered > 10 {
		t.Errorf("%d answers to 10 submits", answered)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
}
