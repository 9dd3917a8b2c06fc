package kafkaconf

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
)

// LagCollector exports a consumer group's lag per topic and partition,
// read with kadm when Prometheus scrapes (end offset minus committed
// offset), as switchboard_<service>_consumer_lag_records{group,topic,partition}.
// Answers are cached for a second, so several scrapers cost one lookup; a
// lookup is bounded by a timeout and a failure is counted in
// switchboard_<service>_consumer_lag_errors_total instead of failing the
// scrape.
//
// With watermark commits (internal/keyorder) the committed offset is the
// lowest unfinished record, so this lag counts finished records above it
// too: it over-counts by up to switchboard_router_finished_uncommittable_offsets.
type LagCollector struct {
	adm     *kadm.Client
	group   string
	timeout time.Duration
	lag     *prometheus.Desc
	errs    prometheus.Counter

	mu   sync.Mutex
	at   time.Time
	last []lagPoint
}

type lagPoint struct {
	topic     string
	partition int32
	lag       int64
}

// NewLagCollector returns the lag collector of group, for service's metric
// names. Register it on the service's registry.
func NewLagCollector(adm *kadm.Client, service, group string) *LagCollector {
	return &LagCollector{
		adm:     adm,
		group:   group,
		timeout: 2 * time.Second,
		lag: prometheus.NewDesc("switchboard_"+service+"_consumer_lag_records",
			"Records in a partition not yet committed by the consumer group (end offset minus committed offset), read at scrape time.",
			[]string{"group", "topic", "partition"}, nil),
		errs: prometheus.NewCounter(prometheus.CounterOpts{
			Name:        "switchboard_" + service + "_consumer_lag_errors_total",
			Help:        "Lag lookups that failed (the lag series are missing from that scrape).",
			ConstLabels: prometheus.Labels{"group": group},
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	c.errs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.points() {
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(p.lag),
			c.group, p.topic, strconv.Itoa(int(p.partition)))
	}
	c.errs.Collect(ch)
}

func (c *LagCollector) points() []lagPoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < time.Second {
		return c.last
	}
	// Collect has no context of its own; the lookup is bounded by timeout.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	lags, err := c.adm.Lag(ctx, c.group)
	if err == nil {
		err = lags.Error()
	}
	if err != nil {
		c.errs.Inc()
		c.last, c.at = nil, time.Now()
		return nil
	}
	var pts []lagPoint
	for _, gl := range lags[c.group].Lag.Sorted() {
		if gl.Err != nil || gl.Lag < 0 {
			continue
		}
		pts = append(pts, lagPoint{gl.Topic, gl.Partition, gl.Lag})
	}
	c.last, c.at = pts, time.Now()
	return pts
}
