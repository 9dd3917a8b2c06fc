package kafkaconf

import (
	"regexp"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gaugeRenamer registers kprom's collectors on a registry, renaming the
// gauges kprom names like counters: #{ns}_buffered_produce_records_total
// and #{ns}_buffered_fetch_records_total are gauges (records buffered now),
// and a _total suffix on a gauge fails `promtool check metrics` and
// misleads rate(). They are exported as #{ns}_buffered_produce_records and
// #{ns}_buffered_fetch_records. Everything else passes through unchanged.
type gaugeRenamer struct {
	prometheus.Registerer

	mu      sync.Mutex
	wrapped map[prometheus.Collector]prometheus.Collector // kprom's collector -> what was registered
}

func newGaugeRenamer(reg prometheus.Registerer) *gaugeRenamer {
	return &gaugeRenamer{Registerer: reg, wrapped: map[prometheus.Collector]prometheus.Collector{}}
}

// Register implements prometheus.Registerer.
func (g *gaugeRenamer) Register(c prometheus.Collector) error {
	w := g.wrap(c)
	if err := g.Registerer.Register(w); err != nil {
		return err
	}
	g.mu.Lock()
	g.wrapped[c] = w
	g.mu.Unlock()
	return nil
}

// MustRegister implements prometheus.Registerer.
func (g *gaugeRenamer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := g.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister implements prometheus.Registerer.
func (g *gaugeRenamer) Unregister(c prometheus.Collector) bool {
	g.mu.Lock()
	w, ok := g.wrapped[c]
	delete(g.wrapped, c)
	g.mu.Unlock()
	if !ok {
		w = c
	}
	return g.Registerer.Unregister(w)
}

var (
	descName = regexp.MustCompile(`fqName: "([^"]*)"`)
	descHelp = regexp.MustCompile(`help: "((?:[^"\\]|\\.)*)"`)
)

// wrap returns c, or a collector renaming its misnamed gauges. Only
// collectors whose every description is label-free are renamed (kprom's
// buffered gauges are, unless client or static labels are configured,
// which Instrument does not do).
func (g *gaugeRenamer) wrap(c prometheus.Collector) prometheus.Collector {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	renames := map[string]*prometheus.Desc{}
	for d := range ch {
		s := d.String()
		m := descName.FindStringSubmatch(s)
		if m == nil || !strings.Contains(m[1], "_buffered_") || !strings.HasSuffix(m[1], "_records_total") ||
			!strings.Contains(s, "constLabels: {}") || !strings.Contains(s, "variableLabels: {}") {
			continue
		}
		help := ""
		if h := descHelp.FindStringSubmatch(s); h != nil {
			help = strings.ReplaceAll(h[1], `\"`, `"`)
		}
		renames[s] = prometheus.NewDesc(strings.TrimSuffix(m[1], "_total"), help, nil, nil)
	}
	if len(renames) == 0 {
		return c
	}
	return &renamedGauges{Collector: c, renames: renames}
}

// renamedGauges is a collector whose label-free gauges described by the
// keys of renames are exported under the new descriptions.
type renamedGauges struct {
	prometheus.Collector
	renames map[string]*prometheus.Desc // old Desc.String() -> new
}

// Describe implements prometheus.Collector.
func (r *renamedGauges) Describe(ch chan<- *prometheus.Desc) {
	inner := make(chan *prometheus.Desc, 16)
	go func() { r.Collector.Describe(inner); close(inner) }()
	for d := range inner {
		if nd, ok := r.renames[d.String()]; ok {
			d = nd
		}
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (r *renamedGauges) Collect(ch chan<- prometheus.Metric) {
	inner := make(chan prometheus.Metric, 16)
	go func() { r.Collector.Collect(inner); close(inner) }()
	for m := range inner {
		nd, ok := r.renames[m.Desc().String()]
		if !ok {
			ch <- m
			continue
		}
		var pb dto.Metric
		if err := m.Write(&pb); err != nil || pb.Gauge == nil {
			ch <- prometheus.NewInvalidMetric(nd, err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(nd, prometheus.GaugeValue, pb.Gauge.GetValue())
	}
}
