package modelsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// newTestServer serves a Server for cfg on loopback until the test ends.
func newTestServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return newTestServerFor(t, s)
}

// newTestServerFor serves s on loopback until the test ends.
func newTestServerFor(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ts.CloseClientConnections() // hung handlers end with their connections
		ts.Close()
	})
	return ts
}

// post sends body to path and returns the response; the test closes it.
func post(t *testing.T, ts *httptest.Server, path, body string) *http.Response {
	t.Helper()
	resp, err := ts.Client().Post(ts.URL+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// decodeBody decodes resp's JSON body into a new T.
func decodeBody[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("decode body: %v", err)
	}
	return v
}

// readEvents returns the data fields of the SSE events in r.
func readEvents(t *testing.T, r io.Reader) []string {
	t.Helper()
	var events []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			events = append(events, data)
		} else if line != "" {
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read events: %v", err)
	}
	return events
}

// streamResult is what a test reads from a stream.
type streamResult struct {
	role         string
	content      string
	finishReason string
	usage        *usage
	done         bool
	chunks       int
}

// parseStream checks the event sequence of a stream and sums it up.
func parseStream(t *testing.T, events []string) streamResult {
	t.Helper()
	var res streamResult
	for i, e := range events {
		if res.done {
			t.Fatalf("event %d %q after [DONE]", i, e)
		}
		if e == "[DONE]" {
			res.done = true
			continue
		}
		var c chunk
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatalf("event %d: decode %q: %v", i, e, err)
		}
		if c.Object != "chat.completion.chunk" {
			t.Errorf("event %d: object = %q, want chat.completion.chunk", i, c.Object)
		}
		res.chunks++
		if c.Usage != nil {
			if len(c.Choices) != 0 {
				t.Errorf("event %d: usage chunk has %d choices, want 0", i, len(c.Choices))
			}
			res.usage = c.Usage
			continue
		}
		if len(c.Choices) != 1 {
			t.Fatalf("event %d: %d choices, want 1", i, len(c.Choices))
		}
		ch := c.Choices[0]
		if i == 0 {
			res.role = ch.Delta.Role
		}
		if ch.Delta.Content != nil {
			res.content += *ch.Delta.Content
		}
		if ch.FinishReason != nil {
			res.finishReason = *ch.FinishReason
		}
	}
	return res
}

func TestCompletionJSON(t *testing.T) {
	ts := newTestServer(t, Config{})
	resp := post(t, ts, "/v1/chat/completions",
		`{"model":"sim","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there world"}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	got := decodeBody[completionResponse](t, resp)
	if !strings.HasPrefix(got.ID, "chatcmpl-") {
		t.Errorf("id = %q, want chatcmpl- prefix", got.ID)
	}
	if got.Object != "chat.completion" || got.Model != "sim" || got.Created == 0 {
		t.Errorf("object, model, created = %q, %q, %d; want chat.completion, sim, non-zero", got.Object, got.Model, got.Created)
	}
	if len(got.Choices) != 1 {
		t.Fatalf("%d choices, want 1", len(got.Choices))
	}
	c := got.Choices[0]
	if c.Index != 0 || c.Message.Role != "assistant" || c.FinishReason != "stop" {
		t.Errorf("choice = %+v, want index 0, role assistant, finish_reason stop", c)
	}
	n := len(strings.Fields(c.Message.Content))
	if n < DefaultMinCompletionTokens || n > DefaultMaxCompletionTokens {
		t.Errorf("content has %d words, want %d..%d", n, DefaultMinCompletionTokens, DefaultMaxCompletionTokens)
	}
	wantUsage := usage{PromptTokens: 2 + 3 + 2*messageOverheadTokens, CompletionTokens: n, TotalTokens: 2 + 3 + 2*messageOverheadTokens + n}
	if got.Usage != wantUsage {
		t.Errorf("usage = %+v, want %+v", got.Usage, wantUsage)
	}
}

func TestStreamMatchesJSON(t *testing.T) {
	ts := newTestServer(t, Config{Models: []string{"a", "b"}})
	tests := []struct {
		name         string
		messages     string
		extra        string
		wantFinish   string
		includeUsage bool
	}{
		{name: "plain", messages: `[{"role":"user","content":"tell me a story"}]`, wantFinish: "stop"},
		{name: "usage", messages: `[{"role":"user","content":"tell me a story"}]`, includeUsage: true, wantFinish: "stop"},
		{name: "max tokens", messages: `[{"role":"user","content":"count"}]`, extra: `,"max_tokens":3`, includeUsage: true, wantFinish: "length"},
		{name: "parts", messages: `[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]}]`, wantFinish: "stop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"model":"b","messages":` + tt.messages + tt.extra
			resp := post(t, ts, "/v1/chat/completions", body+`}`)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("JSON status = %d, want 200", resp.StatusCode)
			}
			want := decodeBody[completionResponse](t, resp)

			streamBody := body + `,"stream":true`
			if tt.includeUsage {
				streamBody += `,"stream_options":{"include_usage":true}`
			}
			sresp := post(t, ts, "/v1/chat/completions", streamBody+`}`)
			if got := sresp.Header.Get("Content-Type"); got != "text/event-stream" {
				t.Fatalf("Content-Type = %q, want text/event-stream", got)
			}
			events := readEvents(t, sresp.Body)
			got := parseStream(t, events)
			if !got.done || events[len(events)-1] != "[DONE]" {
				t.Errorf("stream does not end with [DONE]: last event %q", events[len(events)-1])
			}
			if got.role != "assistant" {
				t.Errorf("first chunk role = %q, want assistant", got.role)
			}
			if got.content != want.Choices[0].Message.Content {
				t.Errorf("stream content = %q, want JSON content %q", got.content, want.Choices[0].Message.Content)
			}
			if got.finishReason != tt.wantFinish || want.Choices[0].FinishReason != tt.wantFinish {
				t.Errorf("finish reasons stream %q, JSON %q; want %q", got.finishReason, want.Choices[0].FinishReason, tt.wantFinish)
			}
			// role chunk + one chunk per word + finish chunk (+ usage chunk)
			wantChunks := want.Usage.CompletionTokens + 2
			if tt.includeUsage {
				wantChunks++
				if got.usage == nil || *got.usage != want.Usage {
					t.Errorf("stream usage = %+v, want %+v", got.usage, want.Usage)
				}
			} else if got.usage != nil {
				t.Errorf("stream usage = %+v without include_usage, want none", got.usage)
			}
			if got.chunks != wantChunks {
				t.Errorf("%d chunks, want %d", got.chunks, wantChunks)
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	ts := newTestServer(t, Config{Models: []string{"a", "b"}})
	content := func(model, messages, extra string) string {
		t.Helper()
		resp := post(t, ts, "/v1/chat/completions", `{"model":"`+model+`","messages":`+messages+extra+`}`)
		return decodeBody[completionResponse](t, resp).Choices[0].Message.Content
	}
	const msgs = `[{"role":"user","content":"what is kafka?"}]`
	first := content("a", msgs, "")
	tests := []struct {
		name     string
		model    string
		messages string
		extra    string
		same     bool // whether the answer equals first
	}{
		{name: "repeat", model: "a", messages: msgs, same: true},
		{name: "other model", model: "b", messages: msgs, same: true},
		{name: "temperature ignored", model: "a", messages: msgs, extra: `,"temperature":1.5`, same: true},
		{name: "other prompt", model: "a", messages: `[{"role":"user","content":"what is kafka!"}]`},
		{name: "other role", model: "a", messages: `[{"role":"system","content":"what is kafka?"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := content(tt.model, tt.messages, tt.extra)
			if (got == first) != tt.same {
				t.Errorf("answer %q, first %q: same = %v, want %v", got, first, got == first, tt.same)
			}
		})
	}
	t.Run("max tokens prefix", func(t *testing.T) {
		got := content("a", msgs, `,"max_tokens":2`)
		if want := strings.Join(strings.Fields(first)[:2], " "); got != want {
			t.Errorf("capped answer = %q, want %q", got, want)
		}
	})
}

func TestErrors(t *testing.T) {
	ts := newTestServer(t, Config{})
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantCode   string
	}{
		{name: "bad json", method: "POST", path: "/v1/chat/completions", body: `{"model":`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "trailing garbage", method: "POST", path: "/v1/chat/completions", body: `{"model":"sim","messages":[{"role":"user","content":"x"}]} x`, wantStatus: 400, wantCode: "invalid_json"},
		{name: "no messages", method: "POST", path: "/v1/chat/completions", body: `{"model":"sim","messages":[]}`, wantStatus: 400, wantCode: "missing_messages"},
		{name: "no model", method: "POST", path: "/v1/chat/completions", body: `{"messages":[{"role":"user","content":"x"}]}`, wantStatus: 400, wantCode: "missing_model"},
		{name: "bad max tokens", method: "POST", path: "/v1/chat/completions", body: `{"model":"sim","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, wantStatus: 400, wantCode: "invalid_max_tokens"},
		{name: "bad temperature", method: "POST", path: "/v1/chat/completions", body: `{"model":"sim","temperature":3,"messages":[{"role":"user","content":"x"}]}`, wantStatus: 400, wantCode: "invalid_temperature"},
		{name: "bad content", method: "POST", path: "/v1/chat/completions", body: `{"model":"sim","messages":[{"role":"user","content":7}]}`, wantStatus: 400, wantCode: "invalid_message"},
		{name: "unknown model", method: "POST", path: "/v1/chat/completions", body: `{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}`, wantStatus: 404, wantCode: "model_not_found"},
		{name: "get chat", method: "GET", path: "/v1/chat/completions", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "post models", method: "POST", path: "/v1/models", body: `{}`, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "unknown path", method: "GET", path: "/v1/embeddings", wantStatus: 404, wantCode: "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			got := decodeBody[struct{ Error *apiError }](t, resp)
			if got.Error == nil {
				t.Fatal("no error object in body")
			}
			if got.Error.Code != tt.wantCode || got.Error.Type == "" || got.Error.Message == "" {
				t.Errorf("error = %+v, want code %q and a type and message", got.Error, tt.wantCode)
			}
		})
	}
}

func TestModelsAndHealth(t *testing.T) {
	ts := newTestServer(t, Config{Models: []string{"sim", "sim-large"}})
	resp, err := ts.Client().Get(ts.URL + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	list := decodeBody[modelList](t, resp)
	if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "sim" || list.Data[1].ID != "sim-large" || list.Data[0].Object != "model" {
		t.Errorf("models = %+v, want list of sim, sim-large", list)
	}

	resp, err = ts.Client().Get(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("healthz = %d %q, want 200 ok", resp.StatusCode, body)
	}
}

func TestLatencyApplied(t *testing.T) {
	const latency = 30 * time.Millisecond
	ts := newTestServer(t, Config{BaseLatency: latency})
	for _, stream := range []bool{false, true} {
		start := time.Now()
		body := `{"model":"sim","messages":[{"role":"user","content":"x"}],"stream":` + map[bool]string{false: "false", true: "true"}[stream] + `}`
		resp := post(t, ts, "/v1/chat/completions", body)
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatal(err)
		}
		// Lower bound only: a stream spreads L over n+1 gaps of L/(n+1),
		// rounded down, so allow a nanosecond per gap.
		if got := time.Since(start); got < latency-time.Duration(DefaultMaxCompletionTokens+1) {
			t.Errorf("stream=%v: took %v, want at least %v", stream, got, latency)
		}
	}
}

func TestStreamTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const latency = 900 * time.Millisecond
		s, err := New(Config{BaseLatency: latency, MinCompletionTokens: 8, MaxCompletionTokens: 8}, nil)
		if err != nil {
			t.Fatal(err)
		}
		w := newEventRecorder()
		req := httptest.NewRequest("POST", "/v1/chat/completions",
			strings.NewReader(`{"model":"sim","stream":true,"messages":[{"role":"user","content":"x"}]}`))
		start := time.Now()
		go s.Handler().ServeHTTP(w, req)

		// 8 tokens: role chunk at 0, token i at i*L/9, finish at L.
		gap := latency / 9
		for i, want := range []int{1, 2, 3, 4, 5, 6, 7, 8, 9} {
			synctest.Wait()
			if got := w.count(); got != want {
				t.Fatalf("at %v: %d events, want %d", time.Since(start), got, want)
			}
			if i < 8 {
				time.Sleep(gap)
			}
		}
		time.Sleep(gap)
		synctest.Wait()
		if got := w.count(); got != 11 { // finish chunk and [DONE]
			t.Errorf("at %v: %d events, want 11", time.Since(start), got)
		}
	})
}

func TestStreamCancel(t *testing.T) {
	t.Run("synctest", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			s, err := New(Config{BaseLatency: time.Hour}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, stream := range []string{"true", "false"} {
				ctx, cancel := context.WithCancel(t.Context())
				req := httptest.NewRequestWithContext(ctx, "POST", "/v1/chat/completions",
					strings.NewReader(`{"model":"sim","stream":`+stream+`,"messages":[{"role":"user","content":"x"}]}`))
				done := make(chan struct{})
				start := time.Now()
				go func() {
					defer close(done)
					s.Handler().ServeHTTP(newEventRecorder(), req)
				}()
				time.Sleep(time.Second)
				cancel()
				<-done
				if got := time.Since(start); got != time.Second {
					t.Errorf("stream=%s: handler returned after %v, want 1s (at cancel)", stream, got)
				}
			}
		})
	})
	t.Run("loopback", func(t *testing.T) {
		s, err := New(Config{BaseLatency: time.Hour}, nil)
		if err != nil {
			t.Fatal(err)
		}
		returned := make(chan struct{})
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(returned)
			s.Handler().ServeHTTP(w, r)
		}))
		defer ts.Close()

		ctx, cancel := context.WithCancel(t.Context())
		req, err := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"sim","stream":true,"messages":[{"role":"user","content":"x"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n') // the role chunk
		if err != nil || !strings.HasPrefix(line, "data: ") {
			t.Fatalf("first line %q, %v; want a data line", line, err)
		}
		cancel()
		select {
		case <-returned:
		case <-time.After(10 * time.Second): // far below the hour the stream would take
			t.Fatal("handler still running 10s after the client went away")
		}
	})
}

// eventRecorder is a ResponseWriter that counts the SSE events written to it.
// It is safe for use by a handler goroutine and a test goroutine.
type eventRecorder struct {
	*httptest.ResponseRecorder
	events chan struct{}
}

func newEventRecorder() *eventRecorder {
	return &eventRecorder{ResponseRecorder: httptest.NewRecorder(), events: make(chan struct{}, 1024)}
}

func (r *eventRecorder) Write(p []byte) (int, error) {
	for range bytes.Count(p, []byte("\n\n")) {
		r.events <- struct{}{}
	}
	return r.ResponseRecorder.Write(p)
}

func (r *eventRecorder) count() int { return len(r.events) }
