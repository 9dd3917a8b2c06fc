package ingress

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/switchboard-llm/switchboard/internal/catalog"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Test API keys: devKey is tenant "dev" (everything allowed), limitedKey is
// tenant "limited" (model sim, batch lane only).
const (
	devKey     = "test-dev-key"
	limitedKey = "test-limited-key"
)

func testTenants(t testing.TB) *tenant.Set {
	t.Helper()
	s, err := tenant.Parse([]byte(`
tenants:
  - name: dev
    key_sha256: [` + tenant.HashKey(devKey) + `]
    show: [kafka_positions]
  - name: limited
    key_sha256: [` + tenant.HashKey(limitedKey) + `]
    models: [sim]
    lanes: [batch]
`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newIngress(t testing.TB, cluster *kfake.Cluster, mod func(*Config)) *Ingress {
	t.Helper()
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Kafka:          kafkaconf.Config{Brokers: cluster.ListenAddrs()},
		Topics:         spec,
		Tenants:        testTenants(t),
		ProduceTimeout: 2 * time.Second,
		Logger:         slog.New(slog.DiscardHandler),
		Admission:      AdmissionConfig{Disabled: true},
	}
	if mod != nil {
		mod(&cfg)
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.client.Close)
	return in
}

func newCluster(t testing.TB) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(12, "switchboard.requests.interactive", "switchboard.requests.batch"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func do(t *testing.T, h http.Handler, method, path, contentType, body string) (*http.Response, []byte) {
	t.Helper()
	return doWith(t, h, method, path, contentType, body, map[string]string{"Authorization": "Bearer " + devKey})
}

func doWith(t *testing.T, h http.Handler, method, path, contentType, body string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func TestAcceptedMessageIsInKafka(t *testing.T) {
	cluster := newCluster(t)
	in := newIngress(t, cluster, nil)
	res, body := do(t, in.Handler(), "POST", "/v1/conversations/conv-1/messages", "application/json",
		`{"model":"sim","lane":"batch","stream":true,"max_tokens":7,"timeout_ms":60000,"metadata":{"k":"v"},"messages":[{"role":"user","content":"hi"}]}`)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status = %d (%s), want 202", res.StatusCode, body)
	}
	var a ack
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatal(err)
	}
	if a.ConversationID != "conv-1" || a.Lane != "batch" || a.RequestID == "" {
		t.Fatalf("ack = %+v", a)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"switchboard.requests.batch": {a.Partition: kgo.NewOffset().At(a.Offset)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	fetches := cl.PollRecords(ctx, 1)
	if err := fetches.Err(); err != nil {
		t.Fatal(err)
	}
	recs := fetches.Records()
	if len(recs) != 1 {
		t.Fatalf("got %d records at the acknowledged offset, want 1", len(recs))
	}
	req, err := envelope.DecodeRequest(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if req.GetRequestId() != a.RequestID || req.GetMaxTokens() != 7 || !req.GetStream() || req.GetMetadata()["k"] != "v" || req.GetDeadline() == nil {
		t.Errorf("record = %v, want the posted request", req)
	}
	if want := envelope.Partition("conv-1", 12); a.Partition != want {
		t.Errorf("partition = %d, want %d (the key's partition)", a.Partition, want)
	}
}

func TestRejectsBadInput(t *testing.T) {
	in := newIngress(t, newCluster(t), func(c *Config) { c.MaxBodyBytes = 256; c.MaxBatchItems = 2 })
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, path, ctype, body string
		status                  int
		code, field             string
	}{
		{"bad conversation id", "/v1/conversations/a%20b/messages", "application/json", `{"model":"sim",` + msgs + `}`, 400, "invalid_request", "conversation_id"},
		{"wrong content type", "/v1/conversations/c/messages", "text/plain", `{}`, 415, "unsupported_media_type", ""},
		{"empty body", "/v1/conversations/c/messages", "application/json", ``, 400, "invalid_json", ""},
		{"two objects", "/v1/conversations/c/messages", "application/json", `{"model":"sim",` + msgs + `}{}`, 400, "invalid_json", ""},
		{"wrong type", "/v1/conversations/c/messages", "application/json", `{"model":5}`, 400, "invalid_json", ""},
		{"unknown field", "/v1/conversations/c/messages", "application/json", `{"modle":"sim"}`, 400, "invalid_json", ""}, //nolint:misspell // an unknown field, misspelt on purpose
		{"missing model", "/v1/conversations/c/messages", "application/json", `{` + msgs + `}`, 400, "invalid_request", "model"},
		{"bad role", "/v1/conversations/c/messages", "application/json", `{"model":"sim","messages":[{"role":"x","content":"hi"}]}`, 400, "invalid_request", "messages[0].role"},
		{"bad lane", "/v1/conversations/c/messages", "application/json", `{"model":"sim","lane":"x",` + msgs + `}`, 400, "invalid_request", "lane"},
		{"negative timeout", "/v1/conversations/c/messages", "application/json", `{"model":"sim","timeout_ms":-1,` + msgs + `}`, 400, "invalid_request", "timeout_ms"},
		{"timeout past a day", "/v1/conversations/c/messages", "application/json", `{"model":"sim","timeout_ms":10000000000000,` + msgs + `}`, 400, "invalid_request", "timeout_ms"},
		{"too large", "/v1/conversations/c/messages", "application/json", `{"model":"sim","messages":[{"role":"user","content":"` + strings.Repeat("x", 300) + `"}]}`, 413, "body_too_large", ""},
		{"invalid utf-8", "/v1/conversations/c/messages", "application/json", `{"model":"sim","messages":[{"role":"user","content":"\xff"}]}`, 400, "invalid_json", ""},
		{"empty batch", "/v1/messages:batch", "application/json", `{"requests":[]}`, 400, "invalid_request", "requests"},
		{"no content type", "/v1/conversations/c/messages", "", `{"model":"sim",` + msgs + `}`, 415, "unsupported_media_type", ""},
		{"duplicate key", "/v1/conversations/c/messages", "application/json", `{"model":"sim","model":"other",` + msgs + `}`, 400, "invalid_json", "model"},
		{"duplicate key inside", "/v1/conversations/c/messages", "application/json", `{"model":"sim","messages":[{"role":"user","content":"a","content":"b"}]}`, 400, "invalid_json", "content"},
		{"dot-dot conversation", "/v1/conversations/%2E%2E/messages", "application/json", `{"model":"sim",` + msgs + `}`, 400, "invalid_request", "conversation_id"},
		{"unknown path", "/v1/nothing", "application/json", `{}`, 404, "not_found", ""},
	}
	in.models.Set(catalog.List{Models: []string{"sim"}})
	tests = append(tests, struct {
		name, path, ctype, body string
		status                  int
		code, field             string
	}{"unknown model", "/v1/conversations/c/messages", "application/json", `{"model":"gpt-unknown",` + msgs + `}`, 400, "unknown_model", "model"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := do(t, in.Handler(), "POST", tt.path, tt.ctype, tt.body)
			var e struct{ Error apiError }
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %q is not a JSON error: %v", body, err)
			}
			if res.StatusCode != tt.status || e.Error.Code != tt.code || e.Error.Field != tt.field || e.Error.Message == "" {
				t.Errorf("got %d %+v, want %d code %q field %q", res.StatusCode, e.Error, tt.status, tt.code, tt.field)
			}
		})
	}
	res, body := do(t, in.Handler(), "GET", "/v1/conversations/c/messages", "", "")
	if res.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(body), `"method_not_allowed"`) || res.Header.Get("Allow") == "" {
		t.Errorf("GET on a POST endpoint: %d %s (Allow %q), want a JSON 405", res.StatusCode, body, res.Header.Get("Allow"))
	}
}
