package ingress

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// readRequests reads n request records from both requests topics.
func readRequests(t *testing.T, brokers []string, n int) []*pb.Request {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics("switchboard.requests.interactive", "switchboard.requests.batch"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out []*pb.Request
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			req, err := envelope.DecodeRequest(rec)
			if err != nil {
				t.Errorf("record %s/%d/%d: %v", rec.Topic, rec.Partition, rec.Offset, err)
				return
			}
			out = append(out, req)
		})
	}
	if len(out) != n {
		t.Fatalf("read %d requests, want %d", len(out), n)
	}
	return out
}

func TestMemoryChoice(t *testing.T) {
	on, off := true, false
	for _, tc := range []struct {
		name     string
		tenant   bool
		protocol string
		body     *bool
		want     bool
	}{
		{"off by default", false, "http", nil, false},
		{"the tenant's setting", true, "http", nil, true},
		{"the request turns it on", false, "ws", &on, true},
		{"the request turns it off", true, "grpc", &off, false},
		{"the OpenAI API only when asked", true, "openai", nil, false},
		{"the OpenAI API asked", false, "openai", &on, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := submission{protocol: tc.protocol, tenant: &tenant.Tenant{Memory: tc.tenant}, body: messageBody{Memory: tc.body}}
			if got := s.memory(); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMemoryRequestsAndForget(t *testing.T) {
	cluster := newCluster(t)
	in := newIngress(t, cluster, nil)
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	res, body := do(t, in.Handler(), "POST", "/v1/conversations/c1/messages", "application/json", `{"model":"sim","memory":true,`+msgs+`}`)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("memory in the body: %d %s", res.StatusCode, body)
	}
	res, body = doWith(t, in.Handler(), "POST", "/v1/conversations/c1/messages", "application/json", `{"model":"sim","memory":true,`+msgs+`}`,
		map[string]string{"Authorization": "Bearer " + devKey, HeaderMemory: "off"})
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("memory header off: %d %s", res.StatusCode, body)
	}
	res, _ = doWith(t, in.Handler(), "POST", "/v1/conversations/c1/messages", "application/json", `{"model":"sim",`+msgs+`}`,
		map[string]string{"Authorization": "Bearer " + devKey, HeaderMemory: "maybe"})
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("memory header maybe: %d, want 400", res.StatusCode)
	}

	res, body = do(t, in.Handler(), "DELETE", "/v1/conversations/c1/history", "", "")
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE history: %d %s, want 202", res.StatusCode, body)
	}
	var fa forgetAnswer
	if err := json.Unmarshal(body, &fa); err != nil || fa.ConversationID != "c1" || !slices.Equal(fa.Lanes, []string{"interactive", "batch"}) {
		t.Errorf("DELETE answer %s (%v), want c1 on both lanes", body, err)
	}
	// The limited tenant may use the batch lane only.
	res, body = doWith(t, in.Handler(), "DELETE", "/v1/conversations/c1/history", "", "", map[string]string{"Authorization": "Bearer " + limitedKey})
	if res.StatusCode != http.StatusAccepted || !json.Valid(body) {
		t.Fatalf("DELETE history (limited): %d %s, want 202", res.StatusCode, body)
	}
	for _, c := range []struct {
		path   string
		auth   string
		status int
	}{
		{"/v1/conversations/a%20b/history", "Bearer " + devKey, http.StatusBadRequest},
		{"/v1/conversations/c1/history", "", http.StatusUnauthorized},
		{"/v1/conversations/c1/history", "Bearer nope", http.StatusUnauthorized},
	} {
		if res, _ := doWith(t, in.Handler(), "DELETE", c.path, "", "", map[string]string{"Authorization": c.auth}); res.StatusCode != c.status {
			t.Errorf("DELETE %s (%q): %d, want %d", c.path, c.auth, res.StatusCode, c.status)
		}
	}

	reqs := readRequests(t, cluster.ListenAddrs(), 5)
	var memory []bool
	forgets := map[string][]string{} // tenant -> lanes
	for _, req := range reqs {
		if req.GetForgetMemory() {
			if req.GetConversationId() != "c1" || req.GetModel() != "" || len(req.GetMessages()) != 0 {
				t.Errorf("forget record %v", req)
			}
			forgets[req.GetTenant()] = append(forgets[req.GetTenant()], req.GetLane())
			continue
		}
		memory = append(memory, req.GetMemory())
	}
	if !slices.Equal(memory, []bool{true, false}) {
		t.Errorf("requests' memory: got %v, want [true false]", memory)
	}
	slices.Sort(forgets["dev"])
	if !slices.Equal(forgets["dev"], []string{"batch", "interactive"}) || !slices.Equal(forgets["limited"], []string{"batch"}) {
		t.Errorf("forget records by tenant: got %v, want dev on both lanes and limited on batch", forgets)
	}
}
