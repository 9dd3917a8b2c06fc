package modelsim

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-llm/switchboard/internal/telemetry"
)

// Metrics counts the requests simulators answer, for the /metrics a
// modelsim process serves: switchboard_modelsim_requests_total{addr,path,code}
// and switchboard_modelsim_request_duration_seconds{addr,path} (time to
// the end of the answer, streams included).
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the simulator metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_modelsim_requests_total",
			Help: "Requests answered, by simulator address, path and HTTP status.",
		}, []string{"addr", "path", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchboard_modelsim_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"addr", "path"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// Wrap counts the requests h answers as the simulator at addr. Paths
// outside the API are counted as "other", so the label stays bounded.
func (m *Metrics) Wrap(h http.Handler, addr string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := telemetry.NewStatusWriter(w) // Unwrap keeps the reset fault's hijack working
		h.ServeHTTP(sw, r)
		path := r.URL.Path
		switch path {
		case "/v1/chat/completions", "/v1/models", "/healthz":
		default:
			path = "other"
		}
		m.requests.WithLabelValues(addr, path, strconv.Itoa(sw.Status)).Inc()
		m.duration.WithLabelValues(addr, path).Observe(time.Since(start).Seconds())
	})
}
