package ingress

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzHandlers drives the HTTP submit handlers (single message and batch)
// with arbitrary bodies, conversation IDs and headers, producing to an
// in-process cluster. Whatever comes in, the answer is a 202 with an ack or
// a 4xx/503 in the documented error shape, never a panic or another 5xx.
func FuzzHandlers(f *testing.F) {
	f.Add(false, "conv-1", "application/json", "Bearer "+devKey, "", []byte(`{"model":"sim","messages":[{"role":"user","content":"hi"}]}`))
	f.Add(false, "conv-1", "", "Bearer "+devKey, "idem-1", []byte(`{"model":"sim","lane":"batch","stream":true,"messages":[{"role":"user","content":"hi"}],"metadata":{"a":"b"}}`))
	f.Add(false, "../x", "application/json; charset=utf-8", "Bearer "+limitedKey, "", []byte(`{"model":"sim","messages":[{"role":"user","content":"hi"}]}`))
	f.Add(true, "", "application/json", "Bearer "+devKey, "", []byte(`{"requests":[{"conversation_id":"c","model":"sim","messages":[{"role":"user","content":"hi"}]},{"conversation_id":"c","model":"nope"}]}`))
	f.Add(true, "", "text/plain", "Bearer "+devKey, "", []byte(`{}`))
	f.Add(false, "c", "application/json", "", "", []byte(`{"model":"sim"}`))
	f.Add(false, "c", "application/json", "Bearer nope", "", []byte(`{"model":"sim","timeout_ms":-1,"max_tokens":999999999}`))
	cluster := newCluster(f)
	in := newIngress(f, cluster, func(c *Config) { c.MaxBodyBytes = 64 << 10; c.ProduceTimeout = 5 * time.Second })
	routes := map[string]http.HandlerFunc{}
	for _, rt := range in.routes() {
		routes[rt.path] = rt.handler
	}
	f.Fuzz(func(t *testing.T, batch bool, conv, contentType, auth, idemKey string, body []byte) {
		path, target := "/v1/conversations/{conversation_id}/messages", "/v1/conversations/c/messages"
		if batch {
			path, target = "/v1/messages:batch", "/v1/messages:batch"
		}
		r := httptest.NewRequest("POST", target, bytes.NewReader(body))
		r.SetPathValue("conversation_id", conv)
		for k, v := range map[string]string{"Content-Type": contentType, "Authorization": auth, "Idempotency-Key": idemKey} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		w := httptest.NewRecorder()
		routes[path](w, r)
		res := w.Result()
		out := w.Body.Bytes()
		if res.StatusCode >= 500 && res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d: %s", res.StatusCode, out)
		}
		if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("status %d with Content-Type %q: %s", res.StatusCode, res.Header.Get("Content-Type"), out)
		}
		switch {
		case res.StatusCode == http.StatusAccepted && !batch:
			var a ack
			if err := json.Unmarshal(out, &a); err != nil || a.RequestID == "" || a.ConversationID != conv || a.Offset < 0 {
				t.Fatalf("202 with ack %s (%v), want a request ID, conversation %q and an offset", out, err, conv)
			}
		case res.StatusCode < 300:
			var v map[string]any
			if err := json.Unmarshal(out, &v); err != nil {
				t.Fatalf("status %d with a body that is not JSON: %v: %s", res.StatusCode, err, out)
			}
		default:
			var e struct {
				Error apiError `json:"error"`
			}
			if err := json.Unmarshal(out, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("status %d with error body %s (%v), want {\"error\":{\"code\",\"message\"}}", res.StatusCode, out, err)
			}
		}
	})
}
