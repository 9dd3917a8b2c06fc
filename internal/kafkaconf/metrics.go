package kafkaconf

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// Instrument returns c with franz-go's client metrics (kprom) registered on
// reg as switchboard_<service>_kafka_* (connections, bytes and records
// produced and fetched per topic and broker, request latency, throttling,
// buffered records). Every client built from the returned Config's Opts
// feeds the same metrics, so a service with several clients shows their sum;
// the buffered_* gauges follow the first client created. kprom's
// buffered_{produce,fetch}_records_total gauges are exported without the
// _total suffix, which Prometheus reserves for counters (see gaugeRenamer).
//
// Call it once per service, where the registry is known, and build every
// client from the result: a second Instrument on the same registry would
// register the same names twice.
func (c Config) Instrument(service string, reg prometheus.Registerer) Config {
	if reg == nil {
		return c
	}
	c.metrics = &clientMetrics{Metrics: kprom.NewMetrics("switchboard",
		kprom.Subsystem(service+"_kafka"),
		kprom.Registerer(newGaugeRenamer(reg)),
		kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Batches, kprom.Records,
			kprom.CompressedBytes, kprom.UncompressedBytes, kprom.ConsistentNaming),
	)}
	return c
}

// clientMetrics shares one kprom.Metrics among any number of clients:
// kprom registers its collectors when a client is created and unregisters
// them when it closes, which would panic for the second of two live clients
// (duplicate registration) and drop the metrics of the other when one
// closes. The collectors are registered when the first client is created and
// removed when the last one closes; every other hook goes straight to kprom.
type clientMetrics struct {
	*kprom.Metrics
	mu   sync.Mutex
	live int
}

// OnNewClient implements kgo.HookNewClient.
func (m *clientMetrics) OnNewClient(cl *kgo.Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live == 0 {
		m.Metrics.OnNewClient(cl)
	}
	m.live++
}

// OnClientClosed implements kgo.HookClientClosed.
func (m *clientMetrics) OnClientClosed(cl *kgo.Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live--
	if m.live == 0 {
		m.Metrics.OnClientClosed(cl)
	}
}
