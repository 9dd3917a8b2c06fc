package ingress

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.CounterVec   // by lane and code
	latency  *prometheus.HistogramVec // by lane
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_ingress_requests_total",
			Help: "Requests answered, by lane and HTTP status code.",
		}, []string{"lane", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_ingress_request_duration_seconds",
			Help:    "Time from receiving a request to answering it (the broker's acknowledgement included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"lane"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}
