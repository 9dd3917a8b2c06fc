package kafkaconf

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func cluster(t *testing.T, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func newClient(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func families(t *testing.T, reg *prometheus.Registry) map[string]bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	return got
}

// Several clients of one instrumented Config share the metrics: no
// duplicate registration, and closing one keeps the others' metrics.
func TestInstrumentSharedByClients(t *testing.T) {
	brokers := cluster(t, "t")
	reg := prometheus.NewRegistry()
	cfg := Config{Brokers: brokers, ClientID: "test"}.Instrument("svc", reg)
	a := newClient(t, cfg.Opts(nil)...)
	b := newClient(t, cfg.Opts(nil)...)
	defer b.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, cl := range []*kgo.Client{a, b} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	got := families(t, reg)
	for _, want := range []string{"switchboard_svc_kafka_connects_total", "switchboard_svc_kafka_produce_records_total", "switchboard_svc_kafka_produce_uncompressed_bytes_total"} {
		if !got[want] {
			t.Errorf("metric %s missing; have %v", want, got)
		}
	}
	if n := testutil.ToFloat64(cfg.metrics.produceRecordsTotalFor(t, "t")); n != 2 {
		t.Errorf("produced records = %v, want 2 (both clients)", n)
	}
	a.Close()
	if !families(t, reg)["switchboard_svc_kafka_connects_total"] {
		t.Error("closing one client removed the metrics the other still feeds")
	}
	b.Close()
	if families(t, reg)["switchboard_svc_kafka_connects_total"] {
		t.Error("metrics still registered after the last client closed")
	}
}

// produceRecordsTotalFor returns the produce_records_total counter of topic
// summed over brokers, as a collector testutil can read.
func (m *clientMetrics) produceRecordsTotalFor(t *testing.T, topic string) prometheus.Collector {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Metrics)
	var sum float64
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !strings.HasSuffix(mf.GetName(), "_produce_records_total") {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "topic" && l.GetValue() == topic {
					sum += mt.GetCounter().GetValue()
				}
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "sum"})
	g.Set(sum)
	return g
}

func TestUninstrumentedConfigAddsNoHooks(t *testing.T) {
	if got, want := len(Config{}.Opts(nil)), 3; got != want {
		t.Errorf("options without metrics and tracing = %d, want %d (brokers, dial timeout, metadata age)", got, want)
	}
	var tr *Tracing
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
	brokers := cluster(t, "t")
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := NewTracing(tp)
	cfg := Config{Brokers: brokers, Tracing: tr}

	prod := newClient(t, cfg.Opts(nil)...)
	defer prod.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	rootCtx, root := tr.Start(ctx, "ingress request", trace.SpanKindServer)
	if err := prod.ProduceSync(rootCtx, &kgo.Record{Topic: "t", Key: []byte("conv"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	root.End()

	cons := newClient(t, append(cfg.Opts(nil), kgo.ConsumeTopics("t"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
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

// The lag collector reports end offset minus committed offset per
// partition.
func TestLagCollector(t *testing.T) {
	brokers := cluster(t, "t")
	cl := newClient(t, kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("t"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Partition: int32(i % 2), Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "t", Partition: 0, At: 2, LeaderEpoch: -1})
	offsets.Add(kadm.Offset{Topic: "t", Partition: 1, At: 5, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, "g", offsets); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewLagCollector(adm, "svc", "g"))
	want := `
# HELP switchboard_svc_consumer_lag_records Records in a partition not yet committed by the consumer group (end offset minus committed offset), read at scrape time.
# TYPE switchboard_svc_consumer_lag_records gauge
switchboard_svc_consumer_lag_records{group="g",partition="0",topic="t"} 3
switchboard_svc_consumer_lag_records{group="g",partition="1",topic="t"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "switchboard_svc_consumer_lag_records"); err != nil {
		t.Error(err)
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
