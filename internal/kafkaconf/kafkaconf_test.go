package kafkaconf

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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
	// kprom counts a batch in a hook that may run just after ProduceSync
	// returns: wait for the count rather than read it once.
	deadline := time.Now().Add(5 * time.Second)
	n := testutil.ToFloat64(cfg.metrics.produceRecordsTotalFor(t, "t"))
	for n != 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		n = testutil.ToFloat64(cfg.metrics.produceRecordsTotalFor(t, "t"))
	}
	if n != 2 {
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

// kprom's buffered-records gauges are exported without the counter suffix
// _total, and every exported gauge and counter is named by its type, so
// `promtool check metrics` passes (checked with promtool when installed).
func TestMetricsNamedByType(t *testing.T) {
	brokers := cluster(t, "t")
	reg := prometheus.NewRegistry()
	cfg := Config{Brokers: brokers, ClientID: "test"}.Instrument("svc", reg)
	cl := newClient(t, cfg.Opts(nil)...)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "t", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := families(t, reg)
	for _, want := range []string{"switchboard_svc_kafka_buffered_produce_records", "switchboard_svc_kafka_buffered_fetch_records"} {
		if !got[want] {
			t.Errorf("metric %s missing; have %v", want, got)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_COUNTER && strings.HasSuffix(mf.GetName(), "_total") {
			t.Errorf("%s is a %v named like a counter", mf.GetName(), mf.GetType())
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not installed: its check did not run")
		return
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = rec.Body
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	// Unregistering through the renamer removes the renamed collectors.
	cl.Close()
	if got := families(t, reg); got["switchboard_svc_kafka_buffered_produce_records"] {
		t.Error("renamed gauge still registered after the last client closed")
	}
}
