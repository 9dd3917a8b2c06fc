package ingress

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

func decodeError(t *testing.T, body []byte) apiError {
	t.Helper()
	var e struct{ Error apiError }
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %q is not a JSON error: %v", body, err)
	}
	return e.Error
}

func TestAuthAndPermissions(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	const path = "/v1/conversations/c/messages"
	const ok = `{"model":"sim","lane":"batch","messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name, auth, body string
		status           int
		code, field      string
	}{
		{"no key", "", ok, 401, "unauthenticated", ""},
		{"not bearer", "Basic " + devKey, ok, 401, "unauthenticated", ""},
		{"unknown key", "Bearer nope", ok, 401, "invalid_api_key", ""},
		{"model not allowed", "Bearer " + limitedKey, `{"model":"gpt","lane":"batch","messages":[{"role":"user","content":"hi"}]}`, 403, "model_not_allowed", "model"},
		{"lane not allowed", "Bearer " + limitedKey, `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`, 403, "lane_not_allowed", "lane"},
		{"too many messages", "Bearer " + devKey, `{"model":"sim","messages":[` + strings.Repeat(`{"role":"user","content":""},`, 256) + `{"role":"user","content":""}]}`, 400, "invalid_request", "messages"},
		{"bad idempotency key", "Bearer " + devKey, ok, 400, "invalid_request", "idempotency_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Authorization": tt.auth}
			if tt.name == "bad idempotency key" {
				h["Idempotency-Key"] = "has space"
			}
			res, body := doWith(t, in.Handler(), "POST", path, "application/json", tt.body, h)
			e := decodeError(t, body)
			if res.StatusCode != tt.status || e.Code != tt.code || e.Field != tt.field {
				t.Errorf("got %d %+v, want %d %q field %q", res.StatusCode, e, tt.status, tt.code, tt.field)
			}
			if tt.status == 401 && res.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	// The limited tenant may send what it is allowed, and its name is on the record.
	res, body := doWith(t, in.Handler(), "POST", path, "application/json", ok, map[string]string{"Authorization": "Bearer " + limitedKey})
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("allowed request: %d %s", res.StatusCode, body)
	}
}

// TestBatchReportsEachItem sends a batch with good and bad items: the good
// ones are in Kafka, the bad ones say why, in order.
func TestBatchReportsEachItem(t *testing.T) {
	cluster := newCluster(t)
	in := newIngress(t, cluster, nil)
	body := `{"requests":[
		{"conversation_id":"b1","model":"sim","messages":[{"role":"user","content":"one"}]},
		{"conversation_id":"b 2","model":"sim","messages":[{"role":"user","content":"two"}]},
		{"conversation_id":"b3","model":"sim","lane":"batch","messages":[{"role":"robot","content":"three"}]},
		{"conversation_id":"b4","model":"sim","lane":"batch","messages":[{"role":"user","content":"four"}]}]}`
	res, b := do(t, in.Handler(), "POST", "/v1/messages:batch", "application/json", body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
	var got batchAnswer
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Accepted != 2 || got.Failed != 2 || len(got.Results) != 4 {
		t.Fatalf("answer = %s, want 2 accepted and 2 failed of 4", b)
	}
	want := []struct {
		status int
		field  string
	}{{202, ""}, {400, "conversation_id"}, {400, "messages[0].role"}, {202, ""}}
	for i, w := range want {
		r := got.Results[i]
		if r.Status != w.status || (w.status == 202) != (r.Ack != nil) || (r.Error != nil && r.Error.Field != w.field) {
			t.Errorf("result %d = %+v, want status %d field %q", i, r, w.status, w.field)
		}
	}
	if got.Results[0].Ack.ConversationID != "b1" || got.Results[3].Ack.Lane != "batch" {
		t.Errorf("acks do not match their items: %s", b)
	}
	// Too many items: the whole batch is refused.
	in2 := newIngress(t, cluster, func(c *Config) { c.MaxBatchItems = 1 })
	res, b = do(t, in2.Handler(), "POST", "/v1/messages:batch", "application/json", body)
	if e := decodeError(t, b); res.StatusCode != 400 || e.Field != "requests" {
		t.Errorf("oversized batch: %d %s, want 400 on field requests", res.StatusCode, b)
	}
}

// TestIdempotencyKey sends the same key three times (two at once): one
// record is produced and every answer is its ack; the request ID is the
// key's, and another tenant's same key is another request.
func TestIdempotencyKey(t *testing.T) {
	cluster := newCluster(t)
	in := newIngress(t, cluster, nil)
	const body = `{"model":"sim","lane":"batch","messages":[{"role":"user","content":"once"}]}`
	send := func(key, apiKey string) ack {
		res, b := doWith(t, in.Handler(), "POST", "/v1/conversations/idem/messages", "application/json", body,
			map[string]string{"Authorization": "Bearer " + apiKey, "Idempotency-Key": key})
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("status %d: %s", res.StatusCode, b)
		}
		var a ack
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		return a
	}
	acks := make(chan ack, 2)
	for range 2 {
		go func() { acks <- send("order-42", devKey) }()
	}
	first, second := <-acks, <-acks
	third := send("order-42", devKey)
	if first != second || first != third {
		t.Fatalf("acks differ: %+v %+v %+v", first, second, third)
	}
	if first.RequestID != RequestIDForKey("dev", "order-42") {
		t.Errorf("request_id = %s, want the key's %s", first.RequestID, RequestIDForKey("dev", "order-42"))
	}
	other := send("order-42", limitedKey)
	if other.RequestID == first.RequestID {
		t.Error("another tenant's same key got the same request ID")
	}
	// Another instance (its own memory) produces the repeat again, but under
	// the same request ID, which readers drop as a duplicate.
	in2 := newIngress(t, cluster, nil)
	res, b := doWith(t, in2.Handler(), "POST", "/v1/conversations/idem/messages", "application/json", body,
		map[string]string{"Authorization": "Bearer " + devKey, "Idempotency-Key": "order-42"})
	var onOther ack
	if err := json.Unmarshal(b, &onOther); err != nil || res.StatusCode != http.StatusAccepted || onOther.RequestID != first.RequestID || onOther.Offset == first.Offset {
		t.Errorf("on another instance: %d %s, want a new record with request ID %s", res.StatusCode, b, first.RequestID)
	}
	fresh := send("order-43", devKey)
	if fresh.RequestID == first.RequestID || fresh.Offset == first.Offset && fresh.Partition == first.Partition {
		t.Error("a new key did not produce a new record")
	}

	// Exactly one record of the first key's ID is in the topic.
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.ConsumeTopics("switchboard.requests.batch"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	seen := 0
	for n := 0; n < 4; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of 4 records", n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			if envelope.Header(r, envelope.HeaderRequestID) == first.RequestID {
				seen++
			}
		})
	}
	if seen != 2 {
		t.Errorf("%d records with the key's request ID, want 2 (one per instance)", seen)
	}
	if got := in.idem.len(); got != 3 {
		t.Errorf("remembered keys = %d, want 3", got)
	}
}

func TestIdempotencyWindowAndBound(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newIdempotency(time.Minute, 2, func() time.Time { return now })
	k := func(s string) idemKey { return idemKey{"t", s} }
	e, owner := s.begin(k("a"), [32]byte{})
	if !owner {
		t.Fatal("first begin is not the owner")
	}
	s.finish(k("a"), e, ack{RequestID: "a"}, true)
	if e2, owner := s.begin(k("a"), [32]byte{}); owner || e2.ack.RequestID != "a" {
		t.Fatal("a repeat within the window is not answered from memory")
	}
	// A failed first request leaves nothing behind.
	e, _ = s.begin(k("f"), [32]byte{})
	s.finish(k("f"), e, ack{}, false)
	if e, owner := s.begin(k("f"), [32]byte{}); !owner {
		t.Fatal("a repeat of a failed request is not tried again")
	} else {
		s.finish(k("f"), e, ack{RequestID: "f"}, true)
	}
	// Past the window, a key is forgotten.
	now = now.Add(2 * time.Minute)
	if e, owner := s.begin(k("a"), [32]byte{}); !owner {
		t.Fatal("a key is remembered past its window")
	} else {
		s.finish(k("a"), e, ack{}, true)
	}
	// The bound: at most max (+1 while adding) entries.
	for i := range 10 {
		e, _ := s.begin(k(string(rune('k'+i))), [32]byte{})
		s.finish(k(string(rune('k'+i))), e, ack{}, true)
	}
	if n := s.len(); n > 3 {
		t.Errorf("%d keys remembered, bound is 2", n)
	}
}
