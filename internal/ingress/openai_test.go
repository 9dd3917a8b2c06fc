package ingress

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/catalog"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func TestDecodeChatRequest(t *testing.T) {
	f32 := func(v float32) *float32 { return &v }
	ok := []struct {
		name, body string
		want       messageBody
		usage      bool
	}{
		{"minimal", `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`,
			messageBody{Model: "sim", Messages: []messageJSON{{"user", "hi"}}}, false},
		{"mapped", `{"model":"sim","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"stream":true,
			"stream_options":{"include_usage":true},"max_tokens":7,"temperature":0.5,"metadata":{"k":"v"}}`,
			messageBody{Model: "sim", Messages: []messageJSON{{"system", "be brief"}, {"user", "hi"}}, Stream: true,
				MaxTokens: 7, Temperature: f32(0.5), Metadata: map[string]string{"k": "v"}}, true},
		{"max_completion_tokens", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":9}`,
			messageBody{Model: "sim", Messages: []messageJSON{{"user", "hi"}}, MaxTokens: 9}, false},
		{"both token limits equal", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_tokens":9,"max_completion_tokens":9}`,
			messageBody{Model: "sim", Messages: []messageJSON{{"user", "hi"}}, MaxTokens: 9}, false},
		{"text parts", `{"model":"sim","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`,
			messageBody{Model: "sim", Messages: []messageJSON{{"user", "a\nb"}}}, false},
		{"nulls and neutral values", `{"model":"sim","messages":[{"role":"user","content":"hi","name":null}],"top_p":null,"tools":null,"n":1,"logprobs":false,"store":false}`,
			messageBody{Model: "sim", Messages: []messageJSON{{"user", "hi"}}}, false},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, f := decodeChatRequest([]byte(tc.body))
			if f != nil {
				t.Fatalf("failure %+v, want none", f)
			}
			gj, _ := json.Marshal(got.body)
			wj, _ := json.Marshal(tc.want)
			if string(gj) != string(wj) || got.includeUsage != tc.usage {
				t.Errorf("got %s usage=%v, want %s usage=%v", gj, got.includeUsage, wj, tc.usage)
			}
		})
	}
	bad := []struct {
		name, body, code, param string
	}{
		{"tools", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"tools":[]}`, "unsupported_parameter", "tools"},
		{"top_p", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"top_p":0.9}`, "unsupported_parameter", "top_p"},
		{"n=2", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"n":2}`, "unsupported_parameter", "n"},
		{"name", `{"model":"sim","messages":[{"role":"user","content":"hi","name":"bob"}]}`, "unsupported_parameter", "messages[0].name"},
		{"image", `{"model":"sim","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, "unsupported_parameter", "messages[0].content[0].type"},
		{"stream option", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"x":1}}`, "unsupported_parameter", "stream_options.x"},
		{"token limits differ", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_tokens":1,"max_completion_tokens":2}`, "invalid_request", "max_completion_tokens"},
		{"zero tokens", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_tokens":0}`, "invalid_request", "max_tokens"},
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, "invalid_request", "model"},
		{"no messages", `{"model":"sim"}`, "invalid_request", "messages"},
		{"no content", `{"model":"sim","messages":[{"role":"user"}]}`, "invalid_request", "messages[0].content"},
		{"wrong type", `{"model":"sim","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}`, "invalid_json", "temperature"},
		{"duplicate key", `{"model":"sim","model":"x","messages":[]}`, "invalid_json", "model"},
		{"two objects", `{"model":"sim"}{}`, "invalid_json", ""},
		{"not an object", `[1]`, "invalid_json", ""},
		{"not UTF-8", "{\"model\":\"\xff\"}", "invalid_json", ""},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, f := decodeChatRequest([]byte(tc.body))
			if f == nil {
				t.Fatal("no failure")
			}
			if f.status != http.StatusBadRequest || f.code != tc.code || f.field != tc.param {
				t.Errorf("got %d %s param %q (%s), want 400 %s param %q", f.status, f.code, f.field, f.message, tc.code, tc.param)
			}
		})
	}
}

func TestOpenAIErrorShape(t *testing.T) {
	cases := []struct {
		f                         *failure
		status                    int
		typ, code, param, retryIn string
	}{
		{&failure{status: 400, code: "unknown_model", field: "model", message: "m"}, 404, "invalid_request_error", "model_not_found", "model", ""},
		{&failure{status: 403, code: "model_not_allowed", field: "model", message: "m"}, 404, "invalid_request_error", "model_not_found", "model", ""},
		{&failure{status: 401, code: "invalid_api_key", message: "m"}, 401, "authentication_error", "invalid_api_key", "", ""},
		{&failure{status: 429, code: "rate_limited", message: "m", retryAfter: 1500 * time.Millisecond}, 429, "rate_limit_error", "rate_limited", "", "2"},
		{&failure{status: 503, code: "lag_shedding", message: "m", retryAfter: time.Second}, 503, "server_error", "lag_shedding", "", "1"},
		{&failure{status: 400, code: "invalid_request", field: "conversation_id", message: "m"}, 400, "invalid_request_error", "invalid_request", HeaderConversationID, ""},
		{&failure{status: 504, code: "timeout", message: "m"}, 504, "timeout", "timeout", "", ""},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		writeOpenAIFailure(rec, tc.f)
		var body struct {
			Error map[string]any `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		e := body.Error
		param, _ := e["param"].(string)
		if rec.Code != tc.status || e["type"] != tc.typ || e["code"] != tc.code || param != tc.param || e["message"] != "m" ||
			rec.Header().Get("Retry-After") != tc.retryIn {
			t.Errorf("%s: got %d %v Retry-After %q, want %d type %s code %s param %q Retry-After %q",
				tc.f.code, rec.Code, e, rec.Header().Get("Retry-After"), tc.status, tc.typ, tc.code, tc.param, tc.retryIn)
		}
		if _, ok := e["param"]; !ok {
			t.Errorf("%s: no param key (OpenAI's shape has it, null when empty)", tc.f.code)
		}
	}
}

func TestResultFailure(t *testing.T) {
	for code, want := range map[string]int{"unknown_model": 404, "deadline_exceeded": 504, "backend_unavailable": 503,
		"circuit_open": 503, "backend_error": 502, "result_too_large": 502} {
		if got := resultFailure(&pb.Error{Code: code}).status; got != want {
			t.Errorf("%s: status %d, want %d", code, got, want)
		}
	}
}

// openAIStack is an ingress served by Run on a kfake cluster with a fake
// worker that answers its requests on the results topic.
type openAIStack struct {
	stop    func() error
	url     string
	in      *Ingress
	cluster *kfake.Cluster
}

// fakeWorker answers every request of the interactive topic: model
// "fail" with a backend_error, model "restart" with a first attempt's
// chunk then a second attempt, "silent" not at all; others with
// "Hello, world" (streamed in two chunks when asked).
func fakeWorker(t *testing.T, brokers []string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("switchboard.requests.interactive"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		cl.Close()
	})
	wg.Go(func() {
		for {
			fetches := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fetches.EachRecord(func(rec *kgo.Record) {
				req, err := envelope.DecodeRequest(rec)
				if err != nil {
					return
				}
				res := func(attempt int32, run string) *pb.Result {
					return &pb.Result{RequestId: req.GetRequestId(), ConversationId: req.GetConversationId(),
						Tenant: req.GetTenant(), Attempt: attempt, RunId: run}
				}
				var out []*pb.Result
				chunk := func(attempt, i int32, d string) {
					r := res(attempt, "run1")
					r.Body = &pb.Result_Chunk{Chunk: &pb.Chunk{Index: i, Delta: d}}
					out = append(out, r)
				}
				final := res(1, "run1")
				final.Body = &pb.Result_Final{Final: &pb.Final{Content: "Hello, world", FinishReason: "stop",
					Usage: &pb.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5}}}
				switch req.GetModel() {
				case "silent":
					return
				case "fail":
					final.Body = &pb.Result_Error{Error: &pb.Error{Code: "backend_error", Message: "the backend said no"}}
				case "restart":
					chunk(1, 0, "Hel")
					chunk(2, 0, "Hello")
					chunk(2, 1, ", world")
					final.Attempt = 2
				default:
					if req.GetStream() {
						chunk(1, 0, "Hello")
						chunk(1, 1, ", world")
					}
				}
				enc := envelope.EncodingProtobuf // metadata results_encoding=json: as router-worker --results-encoding json
				if req.GetMetadata()["results_encoding"] == "json" {
					enc = envelope.EncodingJSON
				}
				for _, r := range append(out, final) {
					kr, _ := envelope.EncodeResultAs("switchboard.results", r, enc)
					if err := cl.ProduceSync(ctx, kr).FirstErr(); err != nil {
						return
					}
				}
			})
		}
	})
}

func startOpenAI(t *testing.T, mod func(*Config)) *openAIStack {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(12, "switchboard.requests.interactive", "switchboard.requests.batch", "switchboard.results"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	in := newIngress(t, cluster, func(c *Config) {
		c.Addr = freeAddr(t)
		if mod != nil {
			mod(c)
		}
	})
	in.models.Set(catalog.List{Models: []string{"sim", "fail", "restart", "silent"}, PublishedAt: time.Unix(1700000000, 0)})
	fakeWorker(t, cluster.ListenAddrs())
	r := runIngress(t, in)
	return &openAIStack{url: r.url, in: in, cluster: cluster, stop: r.stop}
}

func chat(t *testing.T, url, body string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	return post(t, url+"/v1/chat/completions", body, headers)
}

func TestChatCompletion(t *testing.T) {
	s := startOpenAI(t, nil)
	res, body := chat(t, s.url, `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`, nil)
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	var c oaiCompletion
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.ID, "chatcmpl-") || c.Object != "chat.completion" || c.Model != "sim" || c.Created == 0 ||
		len(c.Choices) != 1 || c.Choices[0].Message.Content != "Hello, world" || c.Choices[0].Message.Role != "assistant" ||
		c.Choices[0].FinishReason != "stop" || c.Usage.TotalTokens != 5 {
		t.Errorf("completion %s", body)
	}

	// An Idempotency-Key repeat after the answer went by: the same completion.
	h := map[string]string{"Idempotency-Key": "k1", HeaderConversationID: "conv-a"}
	_, first := chat(t, s.url, `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`, h)
	res, again := chat(t, s.url, `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`, h)
	if res.StatusCode != 200 || string(again) != string(first) {
		t.Errorf("repeat: %d %s, want the first answer %s", res.StatusCode, again, first)
	}
	waitNoWaiters(t, s.in.answers)

	// Errors in OpenAI's shape.
	for _, tc := range []struct {
		body    string
		headers map[string]string
		status  int
		code    string
	}{
		{`{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, nil, 404, "model_not_found"},
		{`{"model":"fail","messages":[{"role":"user","content":"hi"}]}`, nil, 502, "backend_error"},
		{`{"model":"sim","messages":[{"role":"user","content":"hi"}],"tools":[]}`, nil, 400, "unsupported_parameter"},
		{`{"model":"sim","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"Authorization": "Bearer wrong"}, 401, "invalid_api_key"},
		{`{"model":"sim","messages":[{"role":"user","content":"hi"}]}`, map[string]string{HeaderConversationID: "a b"}, 400, "invalid_request"},
		{`{"model":"sim","messages":[{"role":"user","content":"bye"}]}`, h, 422, "idempotency_key_reused"},
	} {
		res, body := chat(t, s.url, tc.body, tc.headers)
		var e struct {
			Error oaiError `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || res.StatusCode != tc.status || e.Error.Code == nil || *e.Error.Code != tc.code {
			t.Errorf("%s: %d %s, want %d %s", tc.body, res.StatusCode, body, tc.status, tc.code)
		}
	}
}

// readSSE returns the data lines of an SSE body, checking its framing.
func readSSE(t *testing.T, r io.Reader) []string {
	t.Helper()
	sc := bufio.NewScanner(r)
	var data []string
	blank := true
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if blank {
				t.Errorf("two blank lines in a row")
			}
			blank = true
		case strings.HasPrefix(line, "data: ") && blank:
			data = append(data, strings.TrimPrefix(line, "data: "))
			blank = false
		default:
			t.Errorf("unexpected line %q", line)
		}
	}
	if !blank {
		t.Errorf("the stream does not end with a blank line")
	}
	return data
}

func TestChatCompletionStream(t *testing.T) {
	s := startOpenAI(t, nil)
	for _, model := range []string{"sim", "restart"} {
		res, body := chat(t, s.url, `{"model":"`+model+`","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, nil)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%s: %d %s: %s", model, res.StatusCode, res.Header.Get("Content-Type"), body)
		}
		data := readSSE(t, strings.NewReader(string(body)))
		if len(data) < 4 || data[len(data)-1] != "[DONE]" {
			t.Fatalf("%s: events %q", model, data)
		}
		var text strings.Builder
		var id string
		for i, d := range data[:len(data)-1] {
			var c struct {
				ID      string `json:"id"`
				Object  string `json:"object"`
				Choices []struct {
					Delta struct {
						Role    string `json:"role"`
						Content string `json:"content"`
					} `json:"delta"`
					FinishReason *string `json:"finish_reason"`
				} `json:"choices"`
				Usage *oaiUsage `json:"usage"`
			}
			if err := json.Unmarshal([]byte(d), &c); err != nil || c.Object != "chat.completion.chunk" {
				t.Fatalf("%s: event %d %q: %v", model, i, d, err)
			}
			if id == "" {
				id = c.ID
			} else if c.ID != id {
				t.Errorf("%s: id %s, then %s", model, id, c.ID)
			}
			last := i == len(data)-2
			if last != (c.Usage != nil) || (last && (len(c.Choices) != 0 || c.Usage.TotalTokens != 5)) {
				t.Errorf("%s: event %d %s: usage only, and only in the last", model, i, d)
			}
			if !last && !strings.Contains(d, `"usage":null`) {
				t.Errorf("%s: event %d %s without usage null", model, i, d)
			}
			for _, ch := range c.Choices {
				text.WriteString(ch.Delta.Content)
				if i == len(data)-3 && (ch.FinishReason == nil || *ch.FinishReason != "stop") {
					t.Errorf("%s: the chunk before usage has no finish_reason stop: %s", model, d)
				}
			}
		}
		if text.String() != "Hello, world" {
			t.Errorf("%s: streamed text %q", model, text.String())
		}
	}
	// An error after the ack is an error event.
	_, body := chat(t, s.url, `{"model":"fail","stream":true,"messages":[{"role":"user","content":"hi"}]}`, nil)
	data := readSSE(t, strings.NewReader(string(body)))
	if len(data) != 2 || !strings.Contains(data[1], `"code":"backend_error"`) {
		t.Errorf("failed stream: %q", data)
	}
}

// TestChatCompletionLimits: the native limits answer in OpenAI's shape: a
// tenant's empty request bucket is 429 rate_limited with Retry-After.
func TestChatCompletionLimits(t *testing.T) {
	s := startOpenAI(t, func(c *Config) {
		set, err := tenant.Parse([]byte(`
tenants:
  - name: dev
    key_sha256: [` + tenant.HashKey(devKey) + `]
    requests_per_second: 0.01
    request_burst: 1
`))
		if err != nil {
			t.Fatal(err)
		}
		c.Tenants = set
	})
	body := `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`
	if res, b := chat(t, s.url, body, nil); res.StatusCode != 200 {
		t.Fatalf("first call: %d %s", res.StatusCode, b)
	}
	res, b := chat(t, s.url, body, nil)
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(b), `"type":"rate_limit_error"`) || !strings.Contains(string(b), `"code":"rate_limited"`) {
		t.Errorf("second call: %d Retry-After %q %s, want 429 rate_limited with Retry-After", res.StatusCode, res.Header.Get("Retry-After"), b)
	}
	waitNoWaiters(t, s.in.answers)
}

func TestChatCompletionTimeout(t *testing.T) {
	s := startOpenAI(t, func(c *Config) { c.OpenAI.Timeout = 300 * time.Millisecond })
	res, body := chat(t, s.url, `{"model":"silent","messages":[{"role":"user","content":"hi"}]}`, nil)
	if res.StatusCode != 504 || !strings.Contains(string(body), `"code":"timeout"`) {
		t.Errorf("got %d %s, want 504 timeout", res.StatusCode, body)
	}
	// A client that goes away leaves no waiter behind.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", s.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"silent","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+devKey)
	req.Header.Set("Content-Type", "application/json")
	if res, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	waitNoWaiters(t, s.in.answers)
}

// waitNoWaiters waits until every call has let go of its waiter.
func waitNoWaiters(t *testing.T, a *answers) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.mu.Lock()
		n := a.n
		a.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters left after the calls ended", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestChatCompletionShutdown: a call waiting when ingress stops gets 503
// within half the shutdown grace, and Run returns.
func TestChatCompletionShutdown(t *testing.T) {
	s := startOpenAI(t, func(c *Config) { c.ShutdownGrace = 2 * time.Second })
	type answer struct {
		status int
		body   []byte
	}
	done := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.url+"/v1/chat/completions",
			strings.NewReader(`{"model":"silent","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+devKey)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{}
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		done <- answer{res.StatusCode, b}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.in.answers.mu.Lock()
		n := s.in.answers.n
		s.in.answers.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the call never waited")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // past the ack
	start := time.Now()
	if err := s.stop(); err != nil {
		t.Errorf("Run: %v", err)
	}
	a := <-done
	if a.status != 503 || !strings.Contains(string(a.body), "Idempotency-Key") || time.Since(start) > 3*time.Second {
		t.Errorf("after %v: %d %s, want 503 within the grace", time.Since(start), a.status, a.body)
	}
}

func TestModels(t *testing.T) {
	cluster := newCluster(t)
	in := newIngress(t, cluster, nil)
	res, body := do(t, in.Handler(), "GET", "/v1/models", "", "")
	if res.StatusCode != 503 || !strings.Contains(string(body), `"type":"server_error"`) {
		t.Errorf("before the catalog: %d %s, want 503", res.StatusCode, body)
	}
	in.models.Set(catalog.List{Models: []string{"b", "a"}, PublishedAt: time.Unix(1700000000, 0)})
	res, body = do(t, in.Handler(), "GET", "/v1/models", "", "")
	want := `{"object":"list","data":[{"id":"a","object":"model","created":1700000000,"owned_by":"switchboard"},` +
		`{"id":"b","object":"model","created":1700000000,"owned_by":"switchboard"}]}`
	if res.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
		t.Errorf("models: %d %s, want %s", res.StatusCode, body, want)
	}
	res, body = doWith(t, in.Handler(), "GET", "/v1/models", "", "", map[string]string{"Authorization": "Bearer " + limitedKey})
	if res.StatusCode != 200 || !strings.Contains(string(body), `"data":[]`) {
		t.Errorf("models of a tenant limited to sim: %d %s", res.StatusCode, body)
	}
	if res, body = do(t, in.Handler(), "GET", "/v1/models/b", "", ""); res.StatusCode != 200 || !strings.Contains(string(body), `"id":"b"`) {
		t.Errorf("model b: %d %s", res.StatusCode, body)
	}
	if res, body = do(t, in.Handler(), "GET", "/v1/models/c", "", ""); res.StatusCode != 404 || !strings.Contains(string(body), `"code":"model_not_found"`) {
		t.Errorf("model c: %d %s", res.StatusCode, body)
	}
	res, body = doWith(t, in.Handler(), "GET", "/v1/models", "", "", nil)
	if res.StatusCode != 401 || !strings.Contains(string(body), `"type":"authentication_error"`) {
		t.Errorf("without a key: %d %s", res.StatusCode, body)
	}
}
