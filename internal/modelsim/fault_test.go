package modelsim

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/llm"
)

func TestFaultsDrawShares(t *testing.T) {
	f := Faults{ErrorRates: map[int]float64{500: 0.1, 429: 0.2}, HangFraction: 0.05, ResetFraction: 0.15,
		SlowFirstTokenFraction: 0.3, SlowFirstToken: time.Second}
	counts := map[string]int{}
	const n = 1000
	for i := range n {
		for j := range n / 10 {
			got := f.draw((float64(i)+0.5)/n, (float64(j)+0.5)/(n/10))
			switch {
			case got.status != 0:
				counts[http.StatusText(got.status)]++
			case got.hang:
				counts["hang"]++
			case got.reset:
				counts["reset"]++
			}
			if got.slow > 0 {
				counts["slow"]++
			}
		}
	}
	total := float64(n * n / 10)
	want := map[string]float64{"Too Many Requests": 0.2, "Internal Server Error": 0.1, "hang": 0.05, "reset": 0.15, "slow": 0.3}
	for k, w := range want {
		if got := float64(counts[k]) / total; got < w-0.002 || got > w+0.002 {
			t.Errorf("%s: share %.4f, want %.2f", k, got, w)
		}
	}
}

func TestFaultsValidate(t *testing.T) {
	tests := []struct {
		name string
		f    Faults
		ok   bool
	}{
		{"zero", Faults{}, true},
		{"sum one", Faults{ErrorRates: map[int]float64{503: 0.5}, HangFraction: 0.5}, true},
		{"sum above one", Faults{ErrorRates: map[int]float64{503: 0.7}, ResetFraction: 0.5}, false},
		{"bad status", Faults{ErrorRates: map[int]float64{200: 0.1}}, false},
		{"negative", Faults{HangFraction: -0.1}, false},
		{"negative retry after", Faults{RetryAfter: -time.Second}, false},
	}
	for _, tt := range tests {
		if err := tt.f.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

// TestFaultsOverHTTP: each fault, as the router's client sees it.
func TestFaultsOverHTTP(t *testing.T) {
	tests := []struct {
		name      string
		faults    Faults
		stream    bool
		wantCode  string
		wantRetry bool
		wantAfter time.Duration
	}{
		{"503 with retry-after", Faults{ErrorRates: map[int]float64{503: 1}, RetryAfter: 1500 * time.Millisecond}, false, "injected_fault", true, 1500 * time.Millisecond},
		{"429", Faults{ErrorRates: map[int]float64{429: 1}}, true, "rate_limit_exceeded", true, 0},
		{"400 not retryable", Faults{ErrorRates: map[int]float64{400: 1}}, false, "injected_fault", false, 0},
		{"reset", Faults{ResetFraction: 1}, false, llm.CodeConnection, true, 0},
		{"reset mid-stream", Faults{ResetFraction: 1}, true, llm.CodeConnection, true, 0},
		{"hang", Faults{HangFraction: 1}, false, llm.CodeTimeout, true, 0},
		{"slow first token", Faults{SlowFirstTokenFraction: 1, SlowFirstToken: time.Minute}, true, llm.CodeFirstTokenTimeout, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, Config{MinCompletionTokens: 8, Faults: tt.faults})
			c, err := llm.New(llm.Config{BaseURL: ts.URL + "/v1", TotalTimeout: 300 * time.Millisecond, FirstTokenTimeout: 200 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseIdleConnections()
			req := llm.ChatRequest{Model: DefaultModel, Messages: []llm.Message{{Role: "user", Content: "hi"}}}
			if tt.stream {
				_, err = c.Stream(t.Context(), req, nil)
			} else {
				_, err = c.Complete(t.Context(), req)
			}
			var le *llm.Error
			if !errors.As(err, &le) {
				t.Fatalf("err = %v, want an *llm.Error", err)
			}
			if le.Code != tt.wantCode || le.Retryable != tt.wantRetry || le.RetryAfter != tt.wantAfter {
				t.Errorf("err = %+v, want code %s, retryable %v, retry after %v", le, tt.wantCode, tt.wantRetry, tt.wantAfter)
			}
		})
	}
}

func TestSetFaultsTakesEffect(t *testing.T) {
	s, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetFaults(Faults{HangFraction: 2}); err == nil {
		t.Error("SetFaults accepted a fraction of 2")
	}
	if err := s.SetFaults(Faults{ErrorRates: map[int]float64{500: 1}}); err != nil {
		t.Fatal(err)
	}
	ts := newTestServerFor(t, s)
	resp := post(t, ts, "/v1/chat/completions", `{"model":"sim","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 500 {
		t.Errorf("status %d after SetFaults, want 500", resp.StatusCode)
	}
	if err := s.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	resp = post(t, ts, "/v1/chat/completions", `{"model":"sim","messages":[{"role":"user","content":"x"}]}`)
	if resp.StatusCode != 200 {
		t.Errorf("status %d after clearing faults, want 200", resp.StatusCode)
	}
}
