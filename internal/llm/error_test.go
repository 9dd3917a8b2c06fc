package llm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var testReq = ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "x"}}}

// call makes testReq with Complete or Stream.
func call(ctx context.Context, c *Client, stream bool) (*ChatResponse, error) {
	if stream {
		return c.Stream(ctx, testReq, nil)
	}
	return c.Complete(ctx, testReq)
}

func TestStatusErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		header    map[string]string
		body      string
		want      Error
		retryLow  time.Duration // RetryAfter bounds, when want.RetryAfter is zero
		retryHigh time.Duration
	}{
		{
			name: "429 retry after seconds", status: 429, header: map[string]string{"Retry-After": "7"},
			body: `{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}`,
			want: Error{StatusCode: 429, Code: "rate_limit_exceeded", Message: "slow down", Retryable: true, RetryAfter: 7 * time.Second},
		},
		{
			name: "429 retry after date", status: 429, header: map[string]string{"Retry-After": time.Now().Add(30 * time.Second).UTC().Format(http.TimeFormat)},
			want:     Error{StatusCode: 429, Message: "Too Many Requests", Retryable: true},
			retryLow: 20 * time.Second, retryHigh: 31 * time.Second,
		},
		{
			name: "503 retry after ms", status: 503, header: map[string]string{"Retry-After-Ms": "1500", "Retry-After": "9"},
			body: `{"error":{"message":"overloaded","type":"server_error","code":null}}`,
			want: Error{StatusCode: 503, Code: "server_error", Message: "overloaded", Retryable: true, RetryAfter: 1500 * time.Millisecond},
		},
		{
			name: "500 text body", status: 500, body: "boom\n",
			want: Error{StatusCode: 500, Message: "boom", Retryable: true},
		},
		{
			name: "502 no body", status: 502,
			want: Error{StatusCode: 502, Message: "Bad Gateway", Retryable: true},
		},
		{
			name: "400 openai body", status: 400,
			body: `{"error":{"message":"bad messages","type":"invalid_request_error","param":"messages","code":null}}`,
			want: Error{StatusCode: 400, Code: "invalid_request_error", Message: "bad messages"},
		},
		{
			name: "401", status: 401, body: `{"error":{"message":"bad key","type":"invalid_request_error","code":"invalid_api_key"}}`,
			want: Error{StatusCode: 401, Code: "invalid_api_key", Message: "bad key"},
		},
		{
			name: "403", status: 403, want: Error{StatusCode: 403, Message: "Forbidden"},
		},
		{
			name: "404 ollama string", status: 404, body: `{"error":"model \"m\" not found, try pulling it first"}`,
			want: Error{StatusCode: 404, Message: `model "m" not found, try pulling it first`},
		},
		{
			name: "422 vllm top level", status: 422, body: `{"object":"error","message":"bad field","type":"BadRequestError","param":null,"code":422}`,
			want: Error{StatusCode: 422, Code: "422", Message: "bad field"},
		},
		{
			name: "redirect not followed", status: 307, header: map[string]string{"Location": "/elsewhere"},
			want: Error{StatusCode: 307, Message: "Temporary Redirect"},
		},
	}
	for _, tt := range tests {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for k, v := range tt.header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(tt.status)
			_, _ = io.WriteString(w, tt.body)
		}))
		c := newClient(t, Config{BaseURL: ts.URL})
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/stream=%v", tt.name, stream), func(t *testing.T) {
				_, err := call(t.Context(), c, stream)
				var got *Error
				if !errors.As(err, &got) {
					t.Fatalf("err = %v (%T), want *Error", err, err)
				}
				if tt.want.RetryAfter == 0 && tt.retryHigh > 0 {
					if got.RetryAfter < tt.retryLow || got.RetryAfter > tt.retryHigh {
						t.Errorf("RetryAfter = %v, want in [%v, %v]", got.RetryAfter, tt.retryLow, tt.retryHigh)
					}
					got.RetryAfter = 0
				}
				if got.StatusCode != tt.want.StatusCode || got.Code != tt.want.Code || got.Message != tt.want.Message ||
					got.Retryable != tt.want.Retryable || got.RetryAfter != tt.want.RetryAfter {
					t.Errorf("got %+v, want %+v", *got, tt.want)
				}
				if IsRetryable(err) != tt.want.Retryable || RetryAfter(err) != got.RetryAfter {
					t.Errorf("IsRetryable, RetryAfter = %v, %v; want %v, %v", IsRetryable(err), RetryAfter(err), tt.want.Retryable, got.RetryAfter)
				}
			})
		}
		ts.Close()
	}
}

// sseHandler writes events, flushing each, then runs then (if set).
func sseHandler(events []string, then func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, e := range events {
			_, _ = io.WriteString(w, e)
			_ = http.NewResponseController(w).Flush()
		}
		if then != nil {
			then(w, r)
		}
	}
}

// hang blocks until the client goes away. It reads the body first: the
// server only notices a closed connection once the body is consumed.
func hang(_ http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

const (
	roleEvent   = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n"
	tokenEvent  = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\n"
	finishEvent = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
)

func TestStreamFailures(t *testing.T) {
	tests := []struct {
		name      string
		handler   http.Handler
		cfg       Config
		wantCode  string
		retryable bool
		deadline  bool // whether the error wraps context.DeadlineExceeded
	}{
		{
			name:     "hang before headers",
			handler:  http.HandlerFunc(hang),
			cfg:      Config{FirstTokenTimeout: 100 * time.Millisecond},
			wantCode: CodeFirstTokenTimeout, retryable: true, deadline: true,
		},
		{
			name:     "hang after role chunk",
			handler:  sseHandler([]string{": keep-alive\n\n", roleEvent}, hang),
			cfg:      Config{FirstTokenTimeout: 100 * time.Millisecond},
			wantCode: CodeFirstTokenTimeout, retryable: true, deadline: true,
		},
		{
			name:     "hang after tokens",
			handler:  sseHandler([]string{roleEvent, tokenEvent}, hang),
			cfg:      Config{FirstTokenTimeout: 10 * time.Second, TotalTimeout: 150 * time.Millisecond},
			wantCode: CodeTimeout, retryable: true, deadline: true,
		},
		{
			name: "connection reset mid-stream",
			handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					panic(err)
				}
				fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(tokenEvent), tokenEvent)
				fmt.Fprintf(buf, "%x\r\n%s", len(tokenEvent), tokenEvent[:10]) // cut mid-chunk
				_ = buf.Flush()
				_ = conn.(*net.TCPConn).SetLinger(0) // close with RST
				_ = conn.Close()
			}),
			wantCode: CodeConnection, retryable: true,
		},
		{
			name:     "clean end before done",
			handler:  sseHandler([]string{roleEvent, tokenEvent, "data: {\"choi"}, nil),
			wantCode: CodeStreamTruncated, retryable: true,
		},
		{
			name:     "error chunk",
			handler:  sseHandler([]string{roleEvent, tokenEvent, `data: {"error":{"message":"engine died","type":"server_error","code":"internal"}}` + "\n\n"}, nil),
			wantCode: "internal", retryable: true,
		},
		{
			name:     "error event with client status",
			handler:  sseHandler([]string{roleEvent, "event: error\ndata: {\"message\":\"context too long\",\"code\":400}\n\n"}, nil),
			wantCode: "400",
		},
		{
			name:     "malformed chunk",
			handler:  sseHandler([]string{roleEvent, "data: {nope}\n\n"}, nil),
			wantCode: CodeInvalidResponse,
		},
		{
			name:     "line too long",
			handler:  sseHandler([]string{roleEvent, "data: " + strings.Repeat("x", maxEventBytes+10) + "\n\n"}, nil),
			wantCode: CodeInvalidResponse,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			defer ts.Close()
			cfg := tt.cfg
			cfg.BaseURL = ts.URL
			c := newClient(t, cfg)
			resp, err := c.Stream(t.Context(), testReq, nil)
			var got *Error
			if !errors.As(err, &got) {
				t.Fatalf("Stream = %+v, %v; want *Error", resp, err)
			}
			if got.Code != tt.wantCode || got.Retryable != tt.retryable {
				t.Errorf("err = %v (code %q, retryable %v), want code %q, retryable %v", err, got.Code, got.Retryable, tt.wantCode, tt.retryable)
			}
			if errors.Is(err, context.DeadlineExceeded) != tt.deadline {
				t.Errorf("errors.Is(%v, DeadlineExceeded) = %v, want %v", err, !tt.deadline, tt.deadline)
			}
		})
	}
}

func TestStreamLenientEnd(t *testing.T) {
	ts := httptest.NewServer(sseHandler([]string{
		":comment\r\n\r\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"}},{\"index\":1,\"delta\":{\"content\":\"other\"}}]}\n\n",
		"data: {\"choices\":[{\"index\":0,\"delta\":\ndata: {\"content\":\"a\\nb\"}}]}\n\n", // data split over two lines
		finishEvent,
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
	}, nil)) // no [DONE]
	defer ts.Close()
	c := newClient(t, Config{BaseURL: ts.URL})
	got, err := c.Stream(t.Context(), testReq, nil)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	want := ChatResponse{Content: "a\nb", FinishReason: "stop", Usage: Usage{3, 2, 5}}
	if got.Content != want.Content || got.FinishReason != want.FinishReason || got.Usage != want.Usage || got.FirstTokenAt.IsZero() {
		t.Errorf("got %+v, want %+v and FirstTokenAt set", got, want)
	}
}

func TestCompleteFailures(t *testing.T) {
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		wantCode  string
		retryable bool
	}{
		{name: "hang", handler: hang, wantCode: CodeTimeout, retryable: true},
		{name: "malformed", handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"choices":`) }, wantCode: CodeInvalidResponse},
		{name: "no choices", handler: func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"choices":[]}`) }, wantCode: CodeInvalidResponse},
		{name: "cut body", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, `{"choices":`)
		}, wantCode: CodeConnection, retryable: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			defer ts.Close()
			c := newClient(t, Config{BaseURL: ts.URL, TotalTimeout: 150 * time.Millisecond})
			_, err := c.Complete(t.Context(), testReq)
			var got *Error
			if !errors.As(err, &got) || got.Code != tt.wantCode || got.Retryable != tt.retryable {
				t.Errorf("err = %v, want code %q, retryable %v", err, tt.wantCode, tt.retryable)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(t, Config{BaseURL: "http://" + addr + "/v1", ConnectTimeout: time.Second})
	for _, stream := range []bool{false, true} {
		_, err := call(t.Context(), c, stream)
		var got *Error
		if !errors.As(err, &got) || got.Code != CodeConnection || !got.Retryable {
			t.Errorf("stream=%v: err = %v, want retryable %s", stream, err, CodeConnection)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{name: "none", header: http.Header{}, want: 0},
		{name: "seconds", header: http.Header{"Retry-After": {"12"}}, want: 12 * time.Second},
		{name: "zero", header: http.Header{"Retry-After": {"0"}}, want: 0},
		{name: "negative", header: http.Header{"Retry-After": {"-3"}}, want: 0},
		{name: "huge", header: http.Header{"Retry-After": {"99999999999999"}}, want: 0},
		{name: "date", header: http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, want: 90 * time.Second},
		{name: "past date", header: http.Header{"Retry-After": {now.Add(-time.Hour).Format(http.TimeFormat)}}, want: 0},
		{name: "garbage", header: http.Header{"Retry-After": {"soon"}}, want: 0},
		{name: "ms wins", header: http.Header{"Retry-After-Ms": {"250"}, "Retry-After": {"1"}}, want: 250 * time.Millisecond},
		{name: "bad ms falls back", header: http.Header{"Retry-After-Ms": {"x"}, "Retry-After": {"1"}}, want: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.header, now); got != tt.want {
				t.Errorf("parseRetryAfter(%v) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		err  *Error
		want string
	}{
		{&Error{StatusCode: 429, Code: "rate_limit_exceeded", Message: "slow"}, "llm: status 429 rate_limit_exceeded: slow"},
		{&Error{Code: CodeFirstTokenTimeout, Message: "no first token within 1s"}, "llm: first_token_timeout: no first token within 1s"},
		{&Error{StatusCode: 500}, "llm: status 500"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	wrapped := fmt.Errorf("route: %w", &Error{Retryable: true, RetryAfter: time.Second})
	if !IsRetryable(wrapped) || RetryAfter(wrapped) != time.Second {
		t.Errorf("IsRetryable, RetryAfter of wrapped = %v, %v; want true, 1s", IsRetryable(wrapped), RetryAfter(wrapped))
	}
	if IsRetryable(errors.New("plain")) || RetryAfter(nil) != 0 {
		t.Error("plain errors must not be retryable")
	}
}
