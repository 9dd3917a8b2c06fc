package loadtest

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func series(vs ...float64) []Point {
	out := make([]Point, len(vs))
	for i, v := range vs {
		out[i] = Point{T: float64(i), V: v}
	}
	return out
}

// TestSoakChecks: a series that grows past its bound over the run fails
// its flatness check; flat ones, and noise within the bound, pass.
func TestSoakChecks(t *testing.T) {
	flat := series(100, 101, 99, 100, 102, 100, 98, 101, 100)
	grows := series(100, 100, 100, 150, 200, 250, 300, 350, 400)
	rep := &Report{WarmupS: 0, DurationS: 8, Series: Series{
		RSSMB:      map[string][]Point{"ingress": flat, "loadtest": grows}, // the load test's own memory is not judged
		Goroutines: map[string][]Point{"egress": flat, "router-worker": grows},
		Lag:        map[string][]Point{"requests": series(10, 20, 15, 10, 300, 20, 10, 15, 12)},
		Classes:    map[string]*ClassSeries{"interactive": {P99MS: flat}},
	}}
	got := map[string]Check{}
	for _, c := range soakChecks(rep) {
		got[c.Name] = c
	}
	want := map[string]bool{"soak: resident memory flat": true, "soak: goroutines flat": false,
		"soak: per-second p99 flat": true, "soak: router group lag flat": true}
	for name, pass := range want {
		c, ok := got[name]
		if !ok || c.Pass != pass {
			t.Errorf("%s: %+v, want pass %v", name, c, pass)
		}
	}
	if d := got["soak: goroutines flat"].Detail; !strings.Contains(d, "router-worker 100→350") {
		t.Errorf("detail %q does not name the growing series and its medians", d)
	}
	if c := flatCheck("x", "", map[string][]Point{"a": series(1)}, 0, 8, 1, 0); c.Pass {
		t.Errorf("a check without samples in both quarters passes: %+v", c)
	}
}

func TestGoroutinesFromMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	n, err := goroutines(t.Context(), srv.Client(), srv.URL)
	if err != nil || n < 1 {
		t.Fatalf("goroutines = %v, %v", n, err)
	}
	bare := httptest.NewServer(promhttp.HandlerFor(prometheus.NewRegistry(), promhttp.HandlerOpts{}))
	defer bare.Close()
	if _, err := goroutines(t.Context(), bare.Client(), bare.URL); err == nil {
		t.Error("a metrics page without go_goroutines gave a count")
	}
}

func TestLongScenarioParams(t *testing.T) {
	ok := DefaultParams()
	if err := ok.validate([]string{"soak", "capacity"}); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mod := range map[string]func(*Params){
		"no soak users":      func(p *Params) { p.SoakUsers = 0 },
		"soak within warmup": func(p *Params) { p.SoakDuration = p.Warmup },
		"factor 1":           func(p *Params) { p.CapacityFactor = 1 },
		"no steps":           func(p *Params) { p.CapacityMaxSteps = 0 },
		"success above 1":    func(p *Params) { p.CapacityMinSuccess = 1.5 },
		"step within warmup": func(p *Params) { p.CapacityStepTime = p.Warmup },
	} {
		p := DefaultParams()
		mod(&p)
		if err := p.validate([]string{"soak", "capacity"}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if slices.Contains(SuiteNames(), "soak") || slices.Contains(SuiteNames(), "capacity") || !slices.Contains(Names(), "capacity") {
		t.Errorf("all = %v, every scenario = %v: soak and capacity only by name", SuiteNames(), Names())
	}
}

// TestCapacitySLO: a step meets the SLO only with nothing lost, enough
// successes and rate, and the overhead over the ordered limit in bound.
func TestCapacitySLO(t *testing.T) {
	p := DefaultParams()
	good := func() *Report {
		return &Report{Classes: map[string]*ClassReport{classInteractive: {OfferedRate: 1000, AchievedRate: 990, SuccessRate: 1,
			OverLimitMS: Percentiles{P99: 80}}}}
	}
	if met, d := capacitySLO(p, good()); !met {
		t.Fatalf("a good step missed: %s", d)
	}
	for name, mod := range map[string]func(*ClassReport){
		"lost":           func(c *ClassReport) { c.Lost = 1 },
		"failures":       func(c *ClassReport) { c.SuccessRate = 0.99 },
		"rate":           func(c *ClassReport) { c.AchievedRate = 800 },
		"over the limit": func(c *ClassReport) { c.OverLimitMS.P99 = 121 },
	} {
		r := good()
		mod(r.Classes[classInteractive])
		if met, _ := capacitySLO(p, r); met {
			t.Errorf("%s: met", name)
		}
	}
}
