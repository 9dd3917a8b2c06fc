package telemetry

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestStartTracingOffWithoutEndpoint(t *testing.T) {
	tp, shutdown, err := StartTracing(t.Context(), "switchboard-test", func(string) string { return "" })
	if err != nil || tp != nil {
		t.Fatalf("StartTracing without endpoint = %v, %v; want nil provider, no error", tp, err)
	}
	if err := shutdown(t.Context()); err != nil {
		t.Error(err)
	}
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, spans reach the collector over
// OTLP/HTTP by the time shutdown returns.
func TestStartTracingExportsToEndpoint(t *testing.T) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL}
	tp, shutdown, err := StartTracing(t.Context(), "switchboard-test", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if tp == nil {
		t.Fatal("no provider although an endpoint is set")
	}
	_, span := tp.Tracer("test").Start(t.Context(), "work")
	span.End()
	if err := shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if posts.Load() == 0 {
		t.Error("no OTLP export reached the endpoint")
	}
}
