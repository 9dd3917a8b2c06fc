package telemetry

import (
	"context"
	"net/http"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing carries OpenTelemetry trace context through Kafka records with
// franz-go's kotel: producing a record starts a "publish" span and writes
// its W3C traceparent into the record's headers; fetching a record starts a
// "receive" span that continues the trace found in its headers. Services add
// spans of their own with Start and Process.
//
// A nil *Tracing is valid and does nothing: no hooks are installed and
// Start, Process and HTTP return their input, so tracing costs nothing when
// it is off (see StartTracing).
type Tracing struct {
	kotel  *kotel.Kotel
	tracer *kotel.Tracer
	otel   trace.Tracer
	prop   propagation.TextMapPropagator
}

// NewTracing returns the tracing of spans to tp, or nil when tp is nil.
func NewTracing(tp trace.TracerProvider) *Tracing {
	if tp == nil {
		return nil
	}
	prop := propagation.TraceContext{}
	tr := kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(prop))
	return &Tracing{
		kotel:  kotel.NewKotel(kotel.WithTracer(tr)),
		tracer: tr,
		otel:   tp.Tracer("github.com/switchboard-llm/switchboard"),
		prop:   prop,
	}
}

// KafkaHooks returns the kgo hooks that trace records (none for nil);
// kafkaconf installs them on every client.
func (t *Tracing) KafkaHooks() []kgo.Hook {
	if t == nil {
		return nil
	}
	return t.kotel.Hooks()
}

// Process starts the span of processing rec, a child of the trace rec
// carried (the "receive" span kotel started when it was fetched), in a
// context that keeps ctx's deadline and cancellation. Records produced with
// the returned context continue the trace. End the span when done.
func (t *Tracing) Process(ctx context.Context, rec *kgo.Record) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	if rec.Context != nil {
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContextFromContext(rec.Context))
	}
	return t.otel.Start(ctx, rec.Topic+" process", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.source.name", rec.Topic),
			attribute.Int("messaging.kafka.source.partition", int(rec.Partition)),
			attribute.Int64("messaging.kafka.message.offset", rec.Offset),
			attribute.String("messaging.kafka.message.key", string(rec.Key)),
		))
}

// Start starts a span named name, a child of ctx's span. A nil Tracing
// returns ctx and its (usually no-op) span.
func (t *Tracing) Start(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.otel.Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}

// End records err on span (when not nil) and ends it.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// HTTP wraps h so that every request except the /metrics, /healthz and
// /readyz probes gets a server span, continuing the caller's trace when the
// request carries a traceparent header. A nil Tracing returns h.
func (t *Tracing) HTTP(h http.Handler) http.Handler {
	if t == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics", "/healthz", "/readyz":
			h.ServeHTTP(w, r)
			return
		}
		ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.otel.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)))
		defer span.End()
		sw := NewStatusWriter(w)
		h.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attribute.Int("http.response.status_code", sw.Status))
		if sw.Status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(sw.Status))
		}
	})
}

// StatusWriter records the status code a handler answers with (200 unless
// it writes another), for metrics and traces of HTTP servers.
type StatusWriter struct {
	http.ResponseWriter
	Status int
}

// NewStatusWriter wraps w.
func NewStatusWriter(w http.ResponseWriter) *StatusWriter {
	return &StatusWriter{ResponseWriter: w, Status: http.StatusOK}
}

// WriteHeader records code and writes it.
func (w *StatusWriter) WriteHeader(code int) {
	w.Status = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush keeps streaming responses (SSE) working through the wrapper.
func (w *StatusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer (to hijack or
// set deadlines).
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
