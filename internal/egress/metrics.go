package egress

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	subscribers   *prometheus.GaugeVec   // transport
	events        *prometheus.CounterVec // event
	dropped       *prometheus.CounterVec // reason
	filtered      *prometheus.CounterVec // reason
	overflows     prometheus.Counter
	undecodable   prometheus.Counter
	replayGaps    prometheus.Counter
	latency       prometheus.Histogram
	authFailed    prometheus.Counter
	revoked       prometheus.Counter
	reloads       *prometheus.CounterVec // result
	refused       prometheus.Counter
	replays       *prometheus.CounterVec // source
	recentBytes   prometheus.Gauge
	recentRecords prometheus.Gauge
	txnHeld       prometheus.Gauge   // see txnview
	txnAborted    prometheus.Counter // see txnview
	// foreignResumes counts resumes from another cluster's cursor that
	// found the client's place; foreignUnmatched those of them whose
	// event this cluster does not hold (region.go).
	foreignResumes   prometheus.Counter
	foreignUnmatched prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		subscribers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_egress_subscribers",
			Help: "Open event streams, by transport (sse, websocket, grpc).",
		}, []string{"transport"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_events_sent_total",
			Help: "Events written to subscribers, by event (chunk, result, error).",
		}, []string{"event"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_duplicates_dropped_total",
			Help: "Results not forwarded to a subscriber because it had them already or they were superseded, by reason (repeated_chunk, superseded_attempt, superseded_run, repeated_terminal, before_cursor).",
		}, []string{"reason"}),
		filtered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_results_filtered_total",
			Help: "Results of a subscribed conversation not forwarded because the subscriber may not see them, by reason (other_tenant).",
		}, []string{"reason"}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_subscriber_overflows_total",
			Help: "Subscribers disconnected because they read too slowly.",
		}),
		txnHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_egress_txn_held_results",
			Help: "Results of open transactions (router-worker --exactly-once) held back until their transaction commits.",
		}),
		txnAborted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_txn_aborted_results_total",
			Help: "Results dropped, never shown to a client, because their transaction aborted.",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_undecodable_results_total",
			Help: "Records on the results topic that could not be decoded and were skipped.",
		}),
		foreignResumes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_foreign_resumes_total",
			Help: "Streams resumed from a cursor made on another Kafka cluster (another region) that found the client's place.",
		}),
		foreignUnmatched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_foreign_resumes_unmatched_total",
			Help: "Foreign resumes whose last event had not reached this cluster: the stream went on from the first event recorded after it.",
		}),
		replayGaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_replay_gaps_total",
			Help: "Replays that started later than asked because retention had deleted the records.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_egress_delivery_latency_seconds",
			Help:    "From a live result record's timestamp to its event written to a subscriber.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		authFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_auth_failures_total",
			Help: "Stream requests refused for a missing or unknown API key.",
		}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_streams_revoked_total",
			Help: "Streams ended with reason revoked: a tenants reload revoked their API key.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_tenants_reloads_total",
			Help: "Reloads of the tenants file: ok, or error when the file was rejected and the running tenants stayed.",
		}, []string{"result"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_streams_refused_total",
			Help: "Streams refused with 429 too_many_streams: their tenant or conversation had too many open.",
		}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_replays_total",
			Help: "Replays of a stream's past, by source: memory (the index of recent results) or kafka (its range was not in the index).",
		}, []string{"source"}),
		recentBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_egress_recent_index_bytes",
			Help: "Estimated memory held by the index of recent results (bounded by --recent-bytes).",
		}),
		recentRecords: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_egress_recent_index_records",
			Help: "Results held by the index of recent results.",
		}),
	}
	reg.MustRegister(m.subscribers, m.events, m.dropped, m.filtered, m.overflows, m.undecodable, m.txnHeld, m.txnAborted,
		m.replayGaps, m.foreignResumes, m.foreignUnmatched, m.latency, m.authFailed, m.revoked, m.reloads, m.refused, m.replays, m.recentBytes, m.recentRecords)
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	return m
}
