package e2e

import (
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// collector is a minimal OTLP/HTTP trace receiver: it keeps every span's
// service and name by trace ID.
type collector struct {
	mu     sync.Mutex
	traces map[string][]string // trace ID -> "service: span name"
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				id := hex.EncodeToString(sp.GetTraceId())
				c.traces[id] = append(c.traces[id], service+": "+sp.GetName())
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

// TestTraceCrossesThePipeline: with OTEL_EXPORTER_OTLP_ENDPOINT set, one
// request's trace holds ingress's HTTP and publish spans, router-worker's
// process and backend-call spans and egress's delivery span, carried in
// the records' traceparent headers.
func TestTraceCrossesThePipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	col := &collector{traces: map[string][]string{}}
	srv := httptest.NewServer(col)
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100") // export every 100ms
	s := apptest.StartStack(t, bin, apptest.StackOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	// A subscriber first, so egress delivers the answer live.
	connected := make(chan struct{})
	streamDone := make(chan error, 1)
	var once sync.Once
	go func() {
		streamDone <- apptest.ReadSSE(ctx, s.EgressURL+"/v1/conversations/traced/events", "", func() { once.Do(func() { close(connected) }) },
			func(ev apptest.Event) bool { return ev.Name != "result" })
	}()
	select {
	case <-connected:
	case err := <-streamDone:
		t.Fatalf("event stream: %v", err)
	}
	if _, err := postMessage(ctx, s.IngressURL, "traced", `{"model":"sim","stream":true,"messages":[{"role":"user","content":"trace me"}]}`); err != nil {
		t.Fatal(err)
	}
	if err := <-streamDone; err != nil {
		t.Fatal(err)
	}

	want := []string{
		"switchboard-ingress: POST /v1/conversations/traced/messages",
		"switchboard-ingress: switchboard.requests.interactive publish",
		"switchboard-router-worker: switchboard.requests.interactive process",
		"switchboard-router-worker: backend call",
		"switchboard-router-worker: switchboard.results publish",
		"switchboard-egress: switchboard.results receive",
		"switchboard-egress: deliver",
	}
	var got []string
	if err := apptest.Wait(20*time.Second, func() error {
		col.mu.Lock()
		defer col.mu.Unlock()
		for _, spans := range col.traces {
			if strings.Contains(strings.Join(spans, "\n"), want[0]) {
				got = append([]string(nil), spans...)
				for _, w := range want {
					if !contains(spans, w) {
						return fmt.Errorf("trace lacks %q; has %q", w, spans)
					}
				}
				return nil
			}
		}
		return fmt.Errorf("no trace with %q among %d traces", want[0], len(col.traces))
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("one trace, %d spans: %q", len(got), got)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
