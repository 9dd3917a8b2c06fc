package egress

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	subscribers prometheus.Gauge
	events      *prometheus.CounterVec // event
	dropped     *prometheus.CounterVec // reason
	overflows   prometheus.Counter
	undecodable prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_egress_subscribers",
			Help: "Open event streams.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_events_sent_total",
			Help: "Events written to subscribers, by event (chunk, result, error).",
		}, []string{"event"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_duplicates_dropped_total",
			Help: "Results not forwarded to a subscriber because it had them already, by reason (repeated_chunk, superseded_attempt, repeated_terminal).",
		}, []string{"reason"}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_subscriber_overflows_total",
			Help: "Subscribers disconnected because they read too slowly.",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_undecodable_results_total",
			Help: "Records on the results topic that could not be decoded and were skipped.",
		}),
	}
	reg.MustRegister(m.subscribers, m.events, m.dropped, m.overflows, m.undecodable)
	return m
}
