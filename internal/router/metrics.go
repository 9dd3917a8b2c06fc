package router

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	processed      *prometheus.CounterVec   // lane, outcome
	backendSeconds *prometheus.HistogramVec // backend, outcome
	deadLetters    *prometheus.CounterVec   // reason
	answerSeconds  *prometheus.HistogramVec // lane
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_router_requests_total",
			Help: "Requests finished, by lane and outcome (ok, dead_letter, unknown_model, deadline_exceeded, backend_unavailable).",
		}, []string{"lane", "outcome"}),
		backendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_router_backend_call_duration_seconds",
			Help:    "Duration of one backend call (one attempt), by backend and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"backend", "outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_router_dead_letters_total",
			Help: "Records written to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		answerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_router_answer_latency_seconds",
			Help:    "End-to-end latency of answered requests: from the request's accepted_at (ingress, or the record's timestamp) to its final result acknowledged by Kafka, by lane.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}, []string{"lane"}),
	}
	reg.MustRegister(m.processed, m.backendSeconds, m.deadLetters, m.answerSeconds)
	return m
}
