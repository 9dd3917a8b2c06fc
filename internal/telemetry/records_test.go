package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func newClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestNilTracingDoesNothing(t *testing.T) {
	var tr *Tracing
	if hooks := tr.KafkaHooks(); len(hooks) != 0 {
		t.Errorf("nil Tracing has %d kafka hooks, want 0", len(hooks))
	}
	ctx := t.Context()
	if got, span := tr.Start(ctx, "x", trace.SpanKindInternal); got != ctx || span.SpanContext().IsValid() {
		t.Error("nil Tracing started a span")
	}
	if got, _ := tr.Process(ctx, &kgo.Record{}); got != ctx {
		t.Error("nil Tracing changed the context")
	}
}

// A trace started before producing continues on the consumer: the record
// carries traceparent, and the process span and a span under it share the
// producer's trace ID.
func TestTracingCarriesContextThroughRecords(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := NewTracing(tp)
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.WithHooks(tr.KafkaHooks()...)}
	prod := newClient(t, opts...)
	defer prod.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	rootCtx, root := tr.Start(ctx, "ingress request", trace.SpanKindServer)
	if err := prod.ProduceSync(rootCtx, &kgo.Record{Topic: "t", Key: []byte("conv"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	root.End()

	cons := newClient(t, append(opts, kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	defer cons.Close()
	var got *kgo.Record
	for got == nil && ctx.Err() == nil {
		cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got = r })
	}
	if got == nil {
		t.Fatal("record not consumed")
	}
	var traceparent string
	for _, h := range got.Headers {
		if h.Key == "traceparent" {
			traceparent = string(h.Value)
		}
	}
	wantTrace := root.SpanContext().TraceID()
	if !strings.Contains(traceparent, wantTrace.String()) {
		t.Fatalf("traceparent header = %q, want trace %s", traceparent, wantTrace)
	}
	pctx, process := tr.Process(ctx, got)
	_, call := tr.Start(pctx, "backend call", trace.SpanKindClient)
	End(call, nil)
	End(process, nil)
	if pctx.Done() != ctx.Done() {
		t.Error("process context lost the caller's cancellation")
	}
	names := map[string]trace.TraceID{}
	for _, s := range rec.Ended() {
		names[s.Name()] = s.SpanContext().TraceID()
	}
	for _, n := range []string{"ingress request", "t publish", "t receive", "t process", "backend call"} {
		id, ok := names[n]
		if !ok {
			t.Errorf("span %q missing; have %v", n, names)
			continue
		}
		if id != wantTrace {
			t.Errorf("span %q in trace %s, want %s", n, id, wantTrace)
		}
	}
}

// HTTP continues a caller's trace for API requests and leaves the probes
// and metrics untraced.
func TestTracingHTTP(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tr := NewTracing(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	var inner trace.SpanContext
	h := tr.HTTP(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			inner = trace.SpanContextFromContext(r.Context())
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req := httptest.NewRequest(http.MethodPost, "/v1/conversations/c/messages", nil)
	req.Header.Set("traceparent", parent)
	h.ServeHTTP(httptest.NewRecorder(), req)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/metrics", nil))

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1 (the API request, not /metrics)", len(spans))
	}
	s := spans[0]
	if got := s.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace %s, want the caller's", got)
	}
	if s.Parent().SpanID().String() != "00f067aa0ba902b7" || inner.SpanID() != s.SpanContext().SpanID() {
		t.Errorf("span parent %s / handler context %s: the caller's span should be the parent and the handler should see the new span", s.Parent().SpanID(), inner.SpanID())
	}
	var status int64
	for _, a := range s.Attributes() {
		if a.Key == "http.response.status_code" {
			status = a.Value.AsInt64()
		}
	}
	if status != http.StatusAccepted {
		t.Errorf("status attribute %d, want 202", status)
	}
	if NewTracing(nil) != nil {
		t.Error("NewTracing(nil) is not nil")
	}
	var off *Tracing
	plain := http.NotFoundHandler()
	if got := off.HTTP(plain); fmt.Sprintf("%p", got) != fmt.Sprintf("%p", plain) {
		t.Error("nil Tracing wrapped the handler")
	}
}
