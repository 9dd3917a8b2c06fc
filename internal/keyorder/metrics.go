package keyorder

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	inflight      *prometheus.GaugeVec // topic
	queued        *prometheus.GaugeVec // topic, partition
	finishedAbove *prometheus.GaugeVec // topic, partition
	metadataBytes *prometheus.GaugeVec // topic, partition
	paused        prometheus.Gauge
	commitSeconds prometheus.Histogram
	rebalances    *prometheus.CounterVec // kind
	skipped       prometheus.Counter
	retries       prometheus.Counter
	txnCommits    prometheus.Counter
	fetchDelay    *prometheus.HistogramVec // topic
}

func newMetrics(prefix string, reg prometheus.Registerer) *metrics {
	m := &metrics{
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: prefix + "_in_flight_records",
			Help: "Records being handled now, by topic (lane).",
		}, []string{"topic"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: prefix + "_queued_records",
			Help: "Fetched records waiting for their key's turn or for budget, by partition.",
		}, []string{"topic", "partition"}),
		finishedAbove: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: prefix + "_finished_uncommittable_offsets",
			Help: "Finished records above the partition's low watermark (kept in commit metadata), at the last commit.",
		}, []string{"topic", "partition"}),
		metadataBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: prefix + "_commit_metadata_bytes",
			Help: "Size of the partition's finished-offset map in the commit metadata, at the last commit.",
		}, []string{"topic", "partition"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: prefix + "_paused_partitions",
			Help: "Partitions whose fetching is paused because their backlog reached the high mark.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    prefix + "_commit_duration_seconds",
			Help:    "Time to commit offsets and metadata.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_rebalance_events_total",
			Help: "Partition assignment changes, by kind (assigned, revoked, lost).",
		}, []string{"kind"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "_skipped_records_total",
			Help: "Records skipped because an earlier owner had finished them (from commit metadata).",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "_handler_retries_total",
			Help: "Handler calls that failed and were retried in place.",
		}),
		txnCommits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: prefix + "_transactions_committed_total",
			Help: "Transactions that committed output and offsets together (exactly-once mode).",
		}),
		fetchDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: prefix + "_fetch_delay_seconds",
			Help: "From a record's timestamp (its producer's clock) to the engine taking it from a fetch, by topic (lane): " +
				"replication before consumers may read it, the fetch and the client's buffering. Clock skew between hosts shifts it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"topic"}),
	}
	reg.MustRegister(m.fetchDelay, m.txnCommits, m.inflight, m.queued, m.finishedAbove, m.metadataBytes, m.paused, m.commitSeconds, m.rebalances, m.skipped, m.retries)
	return m
}
