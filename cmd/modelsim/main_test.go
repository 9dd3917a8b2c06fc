package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/modelsim"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Each simulator's port serves /metrics (with the request counter),
// /healthz and /readyz beside the OpenAI API, as the README says.
func TestServeMetricsAndProbes(t *testing.T) {
	addr := freeAddr(t)
	env := &daemon.Env{Logger: slog.New(slog.DiscardHandler), Registry: telemetry.NewRegistry()}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		errc <- serve(ctx, env, modelsim.Config{Models: []string{"sim"}, BaseLatency: time.Millisecond}, []string{addr})
	}()
	get := func(path string) (int, string) {
		t.Helper()
		var res *http.Response
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if res, err = http.Get("http://" + addr + path); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, _ := get("/v1/models"); code != http.StatusOK {
		t.Errorf("/v1/models: %d", code)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := get(path); code != http.StatusOK {
			t.Errorf("%s: %d, want 200", path, code)
		}
	}
	code, body := get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, `switchboard_modelsim_requests_total{addr="`+addr+`",code="200",path="/v1/models"} 1`) {
		t.Errorf("/metrics: %d, want the /v1/models request counted:\n%s", code, body)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v", err)
	}
}
