package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeReader delivers the answers a test hands it.
type fakeReader struct {
	mu      sync.Mutex
	deliver func(Answer)
}

func (f *fakeReader) Name() string { return "fake" }
func (f *fakeReader) Open(_ context.Context, deliver func(Answer)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deliver = deliver
	return nil
}
func (f *fakeReader) Watch(context.Context, string) error { return nil }
func (f *fakeReader) Close()                              {}
func (f *fakeReader) answer(a Answer) {
	f.mu.Lock()
	deliver := f.deliver
	f.mu.Unlock()
	if deliver != nil {
		a.At = time.Now()
		deliver(a)
	}
}

// refusingIngress answers the first `refuse` posts of each Idempotency-Key
// with 503 and Retry-After: 1, then 202, and has reader deliver the
// request's final answer once per accepted post (answerTwice: the first
// accepted post is answered twice, as two stored copies would be). It
// records each key's bodies.
type refusingIngress struct {
	refuse      int
	answerTwice bool
	reader      *fakeReader
	mu          sync.Mutex
	bodies      map[string][]string // by Idempotency-Key
}

func (f *refusingIngress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	key := r.Header.Get("Idempotency-Key")
	f.mu.Lock()
	f.bodies[key] = append(f.bodies[key], string(b))
	n := len(f.bodies[key])
	f.mu.Unlock()
	if key == "" || n <= f.refuse {
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"kafka is down"}}`)
		return
	}
	var body struct {
		Metadata map[string]string `json:"metadata"`
	}
	_ = json.Unmarshal(b, &body)
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"request_id":"r"}`)
	copies := 1
	if f.answerTwice {
		copies = 2
	}
	for range copies {
		f.reader.answer(Answer{ID: body.Metadata[MetadataKey], Kind: Final})
	}
}

// TestRunResendsRefusedRequests runs open-loop load against an ingress
// that refuses every request's first post with 503 and Retry-After: 1: each
// request is posted again, once, with the same Idempotency-Key and body,
// answered once, and counted as one successful request (not a send error,
// a duplicate or lost), a success after retries but not before, whose
// latency counts from its first intended send time.
func TestRunResendsRefusedRequests(t *testing.T) {
	rd := &fakeReader{}
	ing := &refusingIngress{refuse: 1, reader: rd, bodies: map[string][]string{}}
	srv := httptest.NewServer(ing)
	defer srv.Close()
	drv := newHTTPDriver(srv.URL, "", 5*time.Second)
	defer drv.Close()
	rep, err := Run(t.Context(), Config{Scenario: "test", Driver: drv, Reader: rd, Duration: time.Second, Drain: 10 * time.Second,
		Loads: []Load{{Class: classInteractive, Rate: 5, Conversations: 5}}, Retry: Retry{Max: 3}})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Classes[classInteractive]
	if c == nil || c.Sent != 5 || c.Accepted != 5 || c.SendErrors != 0 || c.Succeeded != 5 || c.Lost != 0 || c.Duplicates != 0 {
		t.Fatalf("class %+v: want 5 sent, accepted and answered once, no send error, loss or duplicate", c)
	}
	if c.Resends != 5 || c.Retried != 5 || c.SuccessRate != 1 || c.SuccessRateFirstAttempt != 0 || c.SucceededFirstAttempt != 0 {
		t.Errorf("resends %d retried %d success %v first attempt %v (%d): want 5, 5, 1, 0 (0)",
			c.Resends, c.Retried, c.SuccessRate, c.SuccessRateFirstAttempt, c.SucceededFirstAttempt)
	}
	if got := rep.Resent["http_503_unavailable"]; got != 5 || len(rep.Errors) != 0 {
		t.Errorf("resent %v errors %v: want 5 resends after http_503_unavailable and no errors", rep.Resent, rep.Errors)
	}
	// Latency from the first intended send: each waited out Retry-After: 1.
	if c.LatencyMS.Count != 5 || c.LatencyMS.P50 < 1000 {
		t.Errorf("latency %+v: want 5 answers, each at least 1000 ms after its first intended send", c.LatencyMS)
	}
	ing.mu.Lock()
	defer ing.mu.Unlock()
	if len(ing.bodies) != 5 {
		t.Errorf("%d Idempotency-Keys, want one per request (5): %v", len(ing.bodies), ing.bodies)
	}
	for key, bodies := range ing.bodies {
		if key == "" || len(bodies) != 2 || bodies[0] != bodies[1] {
			t.Errorf("key %q: posts %q, want the same body twice", key, bodies)
		}
	}
}

// TestRunCountsAnswersOfBothAttempts: when ingress accepted a request
// twice and both copies are answered, the second answer is a real
// duplicate.
func TestRunCountsAnswersOfBothAttempts(t *testing.T) {
	rd := &fakeReader{}
	ing := &refusingIngress{refuse: 0, answerTwice: true, reader: rd, bodies: map[string][]string{}}
	srv := httptest.NewServer(ing)
	defer srv.Close()
	drv := newHTTPDriver(srv.URL, "", 5*time.Second)
	defer drv.Close()
	rep, err := Run(t.Context(), Config{Scenario: "test", Driver: drv, Reader: rd, Duration: time.Second, Drain: 5 * time.Second,
		Loads: []Load{{Class: classInteractive, Rate: 4, Conversations: 2}}, Retry: Retry{Max: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Classes[classInteractive]; c == nil || c.Duplicates != 4 || c.Resends != 0 || c.SuccessRateFirstAttempt != 1 {
		t.Errorf("class %+v: want 4 duplicates, no resends, all successful at the first attempt", c)
	}
}

// TestRetrySendBounded: resends stop after Max, at the budget, and for
// refusals that are not passing; connection failures are resent.
func TestRetrySendBounded(t *testing.T) {
	var mu sync.Mutex
	keys := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		keys[r.Header.Get("Idempotency-Key")]++
		mu.Unlock()
		if r.URL.Path == "/v1/conversations/bad/messages" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"code":"invalid_request","message":"x"}}`)
			return
		}
		w.WriteHeader(http.StatusTooManyRequests) // no Retry-After: back-off from Base
		_, _ = io.WriteString(w, `{"error":{"code":"rate_limited","message":"x"}}`)
	}))
	defer srv.Close()
	d := newHTTPDriver(srv.URL, "", 5*time.Second)
	defer d.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := newHTTPDriver("http://"+ln.Addr().String(), "", 5*time.Second)
	defer refused.Close()
	ln.Close()

	policy := Retry{Max: 3, Base: time.Millisecond, MaxWait: 5 * time.Millisecond, Budget: time.Minute}
	tests := []struct {
		name        string
		d           *httpDriver
		conv        string
		policy      Retry
		intended    time.Time
		wantResends int
		wantCode    string
	}{
		{"at most Max resends", d, "c", policy, time.Now(), 3, "http_429_rate_limited"},
		{"none past the budget", d, "c", Retry{Max: 3, Base: time.Millisecond, MaxWait: 5 * time.Millisecond, Budget: time.Second},
			time.Now().Add(-time.Second), 0, "http_429_rate_limited"},
		{"none after a 400", d, "bad", policy, time.Now(), 0, "http_400_invalid_request"},
		{"refused connections resent", refused, "c", policy, time.Now(), 3, "connect_refused"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := "k" + string(rune('a'+i))
			m := Message{ID: key, IdempotencyKey: key, Conversation: tc.conv, Model: "sim"}
			resends := 0
			err := tc.policy.send(t.Context(), tc.intended, func() error { return tc.d.Send(t.Context(), m) }, func(error) { resends++ })
			if got := errorCode(err); got != tc.wantCode || resends != tc.wantResends {
				t.Errorf("code %q after %d resends, want %q after %d", got, resends, tc.wantCode, tc.wantResends)
			}
			mu.Lock()
			defer mu.Unlock()
			if tc.d == d && keys[key] != tc.wantResends+1 {
				t.Errorf("ingress saw key %q %d times, want %d", key, keys[key], tc.wantResends+1)
			}
		})
	}
}

func TestRetryWait(t *testing.T) {
	now := time.Now()
	p := Retry{Max: 10, Budget: 30 * time.Second, Base: 100 * time.Millisecond, MaxWait: 3 * time.Second}
	refusal := func(after time.Duration) error {
		return &SendError{Code: "http_503_unavailable", Status: 503, RetryAfter: after}
	}
	tests := []struct {
		name     string
		err      error
		n        int
		intended time.Time
		lo, hi   time.Duration // the wait's range; hi 0: no resend
	}{
		{"Retry-After, plus up to a fifth", refusal(time.Second), 0, now, time.Second, 1200 * time.Millisecond},
		{"Retry-After capped at MaxWait", refusal(20 * time.Second), 0, now, 3 * time.Second, 3 * time.Second},
		{"no Retry-After: upper half of Base", refusal(0), 0, now, 50 * time.Millisecond, 100 * time.Millisecond},
		{"no Retry-After: doubling", refusal(0), 2, now, 200 * time.Millisecond, 400 * time.Millisecond},
		{"no Retry-After: capped", refusal(0), 5, now, 1500 * time.Millisecond, 3 * time.Second},
		{"a reset connection", &SendError{Code: "connection_reset"}, 0, now, 50 * time.Millisecond, 100 * time.Millisecond},
		{"a gRPC stream gone", &SendError{Code: "grpc_unavailable"}, 0, now, 50 * time.Millisecond, 100 * time.Millisecond},
		{"a WebSocket refusal", &SendError{Code: "ws_429_rate_limited", Status: 429, RetryAfter: 2 * time.Second}, 0, now, 2 * time.Second, 2400 * time.Millisecond},
		{"Max reached", refusal(time.Second), 10, now, 0, 0},
		{"past the budget", refusal(time.Second), 0, now.Add(-29500 * time.Millisecond), 0, 0},
		{"not passing: 400", &SendError{Code: "http_400_invalid_json", Status: 400}, 0, now, 0, 0},
		{"not passing: timeout", &SendError{Code: "timeout"}, 0, now, 0, 0},
		{"not a SendError", errors.New("x"), 0, now, 0, 0},
	}
	for _, tc := range tests {
		for range 20 { // the jitter is random
			d, ok := p.wait(tc.err, tc.n, tc.intended, now)
			if ok != (tc.hi > 0) || ok && (d < tc.lo || d > tc.hi) {
				t.Errorf("%s: wait %v, %v; want within [%v, %v], resend %v", tc.name, d, ok, tc.lo, tc.hi, tc.hi > 0)
				break
			}
		}
	}
}

func TestRetryAfterHeader(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{{"", 0}, {"3", 3 * time.Second}, {"-1", 0}, {"x", 0}, {"99999999999", 86400 * time.Second}} {
		h := http.Header{}
		h.Set("Retry-After", tc.v)
		if got := retryAfterHeader(h); got != tc.want {
			t.Errorf("Retry-After %q: %v, want %v", tc.v, got, tc.want)
		}
	}
	h := http.Header{}
	h.Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
	if got := retryAfterHeader(h); got < 58*time.Minute || got > time.Hour {
		t.Errorf("Retry-After an hour ahead: %v", got)
	}
}

// TestDriversCarryKeyAndRetryAfter: the ws and openai drivers send the
// Idempotency-Key and return a refusal's Retry-After (retry_after_ms on a
// WebSocket, the header on the OpenAI API), so a resend waits as told and
// is the same request.
func TestDriversCarryKeyAndRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/ws":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				_, data, err := c.Read(r.Context())
				if err != nil {
					return
				}
				var fr struct {
					ID  string `json:"id"`
					Key string `json:"idempotency_key"`
				}
				_ = json.Unmarshal(data, &fr)
				mu.Lock()
				keys = append(keys, "ws:"+fr.Key)
				mu.Unlock()
				reply := `{"type":"error","id":"` + fr.ID + `","error":{"code":"unavailable","message":"x"},"status":503,"retry_after_ms":1500}`
				if err := c.Write(r.Context(), websocket.MessageText, []byte(reply)); err != nil {
					return
				}
			}
		case "/v1/chat/completions":
			mu.Lock()
			keys = append(keys, "openai:"+r.Header.Get("Idempotency-Key"))
			mu.Unlock()
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error":{"message":"x","type":"rate_limit_error","param":null,"code":"rate_limited"}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ws := newWSDriver(srv.URL, "", 5*time.Second, 2)
	defer ws.Close()
	oa := newOpenAIDriver(srv.URL, "", 5*time.Second)
	defer oa.Close()
	for _, tc := range []struct {
		d     Driver
		after time.Duration
	}{{ws, 1500 * time.Millisecond}, {oa, 2 * time.Second}} {
		m := Message{ID: "k-" + tc.d.Name(), IdempotencyKey: "k-" + tc.d.Name(), Conversation: "c", Lane: "interactive", Model: "sim", Content: "x"}
		err := tc.d.Send(t.Context(), m)
		if after, ok := retryable(err); !ok || after != tc.after {
			t.Errorf("%s: %v: retryable %v after %v, want after %v", tc.d.Name(), err, ok, after, tc.after)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(keys); got != "[ws:k-ws openai:k-openai]" {
		t.Errorf("keys received %s, want [ws:k-ws openai:k-openai]", got)
	}
}
