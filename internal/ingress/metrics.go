package ingress

import "github.com/prometheus/client_golang/prometheus"

// metrics are ingress's own metrics (prefix switchboard_ingress_):
//
//	requests_total{protocol,lane,code}       submissions answered, by HTTP status (its equivalent for WS and gRPC)
//	request_duration_seconds{protocol,lane}  time to answer a submission (the broker's acknowledgement included)
//	rejected_total{reason}                   rejected submissions by error code
//	idempotent_replays_total                 repeats answered with the first request's ack
//	in_flight_requests                       submissions being produced now
//	broker_reachable                         1 while the brokers answer the prober's pings
//	consumer_lag_records{lane}               the router-worker group's lag, by lane
//	lag_drain_records_per_second{lane}       how fast the group commits, by lane
//	admission_shedding{lane}                 1 while a lane sheds load
//	admission_changes_total{lane,state}      admission state changes, by lane and new state
//	lag_read_errors_total                    lag reads that failed
//	websocket_connections                    open WebSocket connections
//	tenants_reloads_total{result}            reloads of the tenants file: ok, error (rejected)
//	openai_waiting_requests                  OpenAI-compatible calls waiting for their answers
//	openai_answers_total{outcome}            OpenAI-compatible calls after their ack, by outcome (answered, error, timeout, client_gone, shutdown, restarted)
type metrics struct {
	requests          *prometheus.CounterVec
	latency           *prometheus.HistogramVec
	rejected          *prometheus.CounterVec
	idempotentReplays prometheus.Counter
	brokerReachable   prometheus.Gauge
	lag               *prometheus.GaugeVec
	drain             *prometheus.GaugeVec
	admissionShedding *prometheus.GaugeVec
	admissionChanges  *prometheus.CounterVec
	lagReadErrors     prometheus.Counter
	wsConnections     prometheus.Gauge
	tenantsReloads    *prometheus.CounterVec
	openaiWaiting     prometheus.Gauge
	openaiAnswers     *prometheus.CounterVec
}

// labelLane is the label of the lane (interactive or batch).
const labelLane = "lane"

func newMetrics(reg prometheus.Registerer, inFlight func() float64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_ingress_requests_total",
			Help: "Submissions answered, by protocol, lane (forget: history deletes) and HTTP status code (or the status the HTTP API would give).",
		}, []string{"protocol", labelLane, "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_ingress_request_duration_seconds",
			Help:    "Time from receiving a submission to answering it (the broker's acknowledgement included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"protocol", labelLane}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_ingress_rejected_total",
			Help: "Rejected submissions, by error code.",
		}, []string{"reason"}),
		tenantsReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_ingress_tenants_reloads_total",
			Help: "Reloads of the tenants file: ok, or error when the file was rejected and the running tenants stayed.",
		}, []string{"result"}),
		idempotentReplays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_ingress_idempotent_replays_total",
			Help: "Repeated Idempotency-Keys answered with the first request's ack, producing nothing.",
		}),
		brokerReachable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_ingress_broker_reachable",
			Help: "1 while the brokers answer the health prober.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_ingress_consumer_lag_records",
			Help: "The router-worker group's lag, by lane, as admission last read it.",
		}, []string{labelLane}),
		drain: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_ingress_lag_drain_records_per_second",
			Help: "How fast the router-worker group commits, by lane (smoothed).",
		}, []string{labelLane}),
		admissionShedding: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_ingress_admission_shedding",
			Help: "1 while a lane rejects new work because of consumer lag.",
		}, []string{labelLane}),
		admissionChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_ingress_admission_changes_total",
			Help: "Admission state changes, by lane and the state entered (shedding, admitting).",
		}, []string{labelLane, "state"}),
		lagReadErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_ingress_lag_read_errors_total",
			Help: "Failed reads of the router-worker group's lag.",
		}),
		wsConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_ingress_websocket_connections",
			Help: "Open WebSocket connections.",
		}),
		openaiWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_ingress_openai_waiting_requests",
			Help: "OpenAI-compatible calls waiting for their answers from the results topic (bounded by --openai-max-waiting).",
		}),
		openaiAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_ingress_openai_answers_total",
			Help: "OpenAI-compatible calls whose request Kafka acknowledged, by outcome: answered, error (an error result), timeout, client_gone, shutdown, restarted.",
		}, []string{"outcome"}),
	}
	m.brokerReachable.Set(1)
	m.tenantsReloads.WithLabelValues("ok")
	m.tenantsReloads.WithLabelValues("error")
	reg.MustRegister(m.requests, m.latency, m.rejected, m.idempotentReplays, m.brokerReachable, m.lag, m.drain,
		m.admissionShedding, m.admissionChanges, m.lagReadErrors, m.wsConnections, m.tenantsReloads, m.openaiWaiting, m.openaiAnswers,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "switchboard_ingress_in_flight_requests",
			Help: "Submissions being produced now (bounded by --max-in-flight).",
		}, inFlight))
	return m
}
