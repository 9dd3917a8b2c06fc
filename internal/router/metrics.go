package router

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	processed      *prometheus.CounterVec   // lane, outcome
	backendSeconds *prometheus.HistogramVec // backend, outcome
	backendCalls   *prometheus.CounterVec   // backend, outcome
	deadLetters    *prometheus.CounterVec   // reason
	limiterWait    *prometheus.HistogramVec // limiter
	reloads        *prometheus.CounterVec   // result
	retries        prometheus.Counter
	answerSeconds  *prometheus.HistogramVec // lane
	duplicates     *prometheus.CounterVec   // lane
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
		backendCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_router_backend_requests_total",
			Help: "Backend calls (attempts), by backend and outcome (ok, http_<status>, timeout, error); every outcome but ok is an error.",
		}, []string{"backend", "outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_router_dead_letters_total",
			Help: "Records written to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		limiterWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_router_limiter_wait_seconds",
			Help:    "Time a request waited before its call, by what held it (tenant_requests, tenant_tokens, rate_limit, concurrency, half_open, retry_after, system_open).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"limiter"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_router_config_reloads_total",
			Help: "Backends file reloads, by result (ok, error: the old configuration stays).",
		}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_router_retries_total",
			Help: "Backend calls retried after a retryable failure.",
		}),
		answerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_router_answer_latency_seconds",
			Help:    "End-to-end latency of answered requests: from the request's accepted_at (ingress, or the record's timestamp) to its final result acknowledged by Kafka, by lane.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}, []string{"lane"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_router_duplicate_requests_skipped_total",
			Help: "Requests not sent to a model because their partition had already seen their request ID at another offset (a repeated Idempotency-Key), answered with a copy of the first answer, by lane.",
		}, []string{"lane"}),
	}
	reg.MustRegister(m.processed, m.backendSeconds, m.backendCalls, m.deadLetters, m.limiterWait, m.reloads, m.retries, m.answerSeconds, m.duplicates)
	return m
}

// poolCollector exports the states read from the balancer at scrape time:
// every breaker's state and each backend's calls in flight.
type poolCollector struct {
	b        *balancer
	state    *prometheus.Desc
	inflight *prometheus.Desc
}

func newPoolCollector(b *balancer) *poolCollector {
	return &poolCollector{
		b: b,
		state: prometheus.NewDesc("switchboard_router_breaker_state",
			"Circuit breaker state (0 closed, 1 half-open, 2 open), by level (endpoint: a backend; service: a model's pool, "+
				"open when all its backends are, half-open when none is closed; system: open when every backend is) and name.",
			[]string{"level", "name"}, nil),
		inflight: prometheus.NewDesc("switchboard_router_backend_in_flight",
			"Calls in flight to a backend.", []string{"backend"}, nil),
	}
}

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.inflight
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.snapshot()
	for name, v := range s.endpoints {
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, "endpoint", name)
	}
	for model, v := range s.services {
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, "service", model)
	}
	ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, s.system, "system", "system")
	for name, n := range s.inflight {
		ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(n), name)
	}
}
