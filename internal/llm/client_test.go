package llm

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/modelsim"
)

// newClient returns a client for base whose pool is closed when the test
// ends.
func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// newSim serves a modelsim on loopback until the test ends and returns its
// base URL.
func newSim(t *testing.T, cfg modelsim.Config) string {
	t.Helper()
	sim, err := modelsim.New(cfg, nil)
	if err != nil {
		t.Fatalf("modelsim.New: %v", err)
	}
	ts := httptest.NewServer(sim.Handler())
	t.Cleanup(ts.Close)
	return ts.URL + "/v1"
}

func TestAgainstModelsim(t *testing.T) {
	base := newSim(t, modelsim.Config{Models: []string{"sim", "big"}})
	c := newClient(t, Config{BaseURL: base})
	temp := float32(0.2)
	tests := []struct {
		name       string
		req        ChatRequest
		wantFinish string
	}{
		{name: "plain", req: ChatRequest{Model: "sim", Messages: []Message{{Role: "user", Content: "hello there"}}}, wantFinish: "stop"},
		{name: "system and temperature", req: ChatRequest{Model: "big", Temperature: &temp, Messages: []Message{{Role: "system", Content: "be kind"}, {Role: "user", Content: "why"}}}, wantFinish: "stop"},
		{name: "max tokens", req: ChatRequest{Model: "sim", MaxTokens: 4, Messages: []Message{{Role: "user", Content: "long please"}}}, wantFinish: "length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			want, err := c.Complete(t.Context(), tt.req)
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			if want.Content == "" || want.FinishReason != tt.wantFinish || want.FirstTokenAt.Before(start) {
				t.Errorf("Complete = %+v, want content, finish %q, FirstTokenAt set", want, tt.wantFinish)
			}
			words := len(strings.Fields(want.Content))
			if want.Usage.CompletionTokens != words || want.Usage.PromptTokens == 0 || want.Usage.TotalTokens != want.Usage.PromptTokens+words {
				t.Errorf("usage = %+v for %d words", want.Usage, words)
			}
			if tt.req.MaxTokens > 0 && words != tt.req.MaxTokens {
				t.Errorf("%d words, want max_tokens %d", words, tt.req.MaxTokens)
			}

			var deltas []string
			got, err := c.Stream(t.Context(), tt.req, func(d string) error {
				deltas = append(deltas, d)
				return nil
			})
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			if got.Content != want.Content || strings.Join(deltas, "") != want.Content {
				t.Errorf("stream content %q, deltas %q; want %q", got.Content, deltas, want.Content)
			}
			if len(deltas) != words {
				t.Errorf("%d deltas, want one per word (%d)", len(deltas), words)
			}
			if got.FinishReason != want.FinishReason || got.Usage != want.Usage {
				t.Errorf("stream finish %q usage %+v; want %q %+v", got.FinishReason, got.Usage, want.FinishReason, want.Usage)
			}
			if got.FirstTokenAt.Before(start) {
				t.Errorf("FirstTokenAt = %v, want after %v", got.FirstTokenAt, start)
			}
		})
	}
}

func TestStreamDeltaErrorAborts(t *testing.T) {
	c := newClient(t, Config{BaseURL: newSim(t, modelsim.Config{})})
	stop := errors.New("consumer gone")
	calls := 0
	_, err := c.Stream(t.Context(), ChatRequest{Model: "sim", Messages: []Message{{Role: "user", Content: "x"}}}, func(string) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 || IsRetryable(err) {
		t.Errorf("err = %v after %d calls, want the callback's error after 1, not retryable", err, calls)
	}
}

func TestRequestHeaders(t *testing.T) {
	var got atomic.Pointer[http.Header]
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		got.Store(&h)
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
			http.Error(w, "wrong route", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`))
	}))
	defer ts.Close()
	c := newClient(t, Config{BaseURL: ts.URL + "/v1", APIKey: "sk-test"})
	// A server that ignores "stream" and answers JSON still gives one delta.
	var deltas []string
	resp, err := c.Stream(t.Context(), ChatRequest{Model: "m", Messages: []Message{{Role: "user", Content: "x"}}}, func(d string) error {
		deltas = append(deltas, d)
		return nil
	})
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if resp.Content != "hi" || resp.FinishReason != "stop" || len(deltas) != 1 || deltas[0] != "hi" {
		t.Errorf("Stream = %+v with deltas %q, want hi/stop and one delta", resp, deltas)
	}
	h := *got.Load()
	if h.Get("Authorization") != "Bearer sk-test" || h.Get("Content-Type") != "application/json" || h.Get("Accept") != "text/event-stream" {
		t.Errorf("headers = %v, want bearer key, JSON body, SSE accept", h)
	}
}

func TestCallerCancel(t *testing.T) {
	c := newClient(t, Config{BaseURL: newSim(t, modelsim.Config{BaseLatency: time.Hour})})
	req := ChatRequest{Model: "sim", Messages: []Message{{Role: "user", Content: "x"}}}
	for _, stream := range []bool{false, true} {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		var err error
		if stream {
			_, err = c.Stream(ctx, req, nil)
		} else {
			_, err = c.Complete(ctx, req)
		}
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || IsRetryable(err) {
			t.Errorf("stream=%v: err = %v, want the caller's deadline, not retryable", stream, err)
		}
	}
}
