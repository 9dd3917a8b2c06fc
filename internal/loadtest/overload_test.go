package loadtest

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// overloadReport builds a step's report (30 s, the first 3 s warmup):
// offered req/s, sent, accepted and shed (HTTP 503) requests of which
// measured and succeeded (all answered), terminal answers in each second,
// an end-to-end p99, and the services' cores.
func overloadReport(offered float64, sent, accepted, shed, measured, succeeded int, perSecond, p99, cores float64) *Report {
	answered := &ClassSeries{}
	for i := range 40 { // the drain's answers (30 s and later) do not count
		answered.Answered = append(answered.Answered, Point{T: float64(i), V: perSecond})
	}
	return &Report{
		DurationS: 30, WarmupS: 3,
		Series: Series{Classes: map[string]*ClassSeries{classInteractive: answered}},
		Classes: map[string]*ClassReport{classInteractive: {OfferedRate: offered, Sent: sent, Accepted: accepted,
			SendErrors: shed + 2, Measured: measured, Answered: succeeded, Succeeded: succeeded,
			LatencyMS: Percentiles{Count: int64(succeeded), P50: p99 / 2, P99: p99}, OverLimitMS: Percentiles{P50: 10, P99: p99 / 4}}},
		Errors: map[string]int{"http_503_lag_shedding": shed, "connect_refused": 2},
		Processes: map[string]*ProcessReport{ProcIngress: {AvgCores: 0.25}, ProcRouter: {AvgCores: 0.5}, ProcEgress: {AvgCores: cores - 0.75},
			ProcModelsim: {AvgCores: 0.3}, "loadtest": {AvgCores: 0.4}},
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6*max(1, math.Abs(b)) }

// TestOverloadFigures: admitted and shed rates are the offered rate times
// their shares of the requests sent; goodput the terminal answers per
// second of the measured window (3 to 30 s) times the measured requests'
// success share; only 429/503 refusals count as shed; CPU per answer is
// the services' cores (not modelsim's or the load test's) over the
// goodput.
func TestOverloadFigures(t *testing.T) {
	r := overloadReport(1600, 48000, 36000, 11998, 43200, 32000, 0, 700, 1.5)
	c := r.Classes[classInteractive]
	c.Answered = 40000 // 8000 failed
	cs := r.Series.Classes[classInteractive]
	cs.Answered = []Point{{T: 2, V: 100000}, {T: 3, V: 1000}, {T: 10, V: 26000}, {T: 29, V: 0}, {T: 30, V: 100000}}
	cs.P99MS = []Point{{T: 5, V: 100}, {T: 23, V: 50}, {T: 25, V: 900}, {T: 27, V: 700}, {T: 29, V: 800}, {T: 31, V: 5000}}
	o := overloadFigures(1.6, r)
	goodput := 27000.0 / 27 * 32000 / 40000
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"admitted", o.Admitted, 1200},
		{"shed", o.Shed, 1600 * 11998.0 / 48000},
		{"goodput", o.Goodput, goodput},
		{"stack cores", o.StackCores, 1.5},
		{"total cores", o.TotalCores, 2.2},
		{"cpu per answer", o.CPUPerAnswerMS, 1500 / goodput},
		// last quarter of [3, 30] s: from 23.25 s; 23 s is before it, 31 s past the end
		{"late p99", o.LateP99MS, 800},
	} {
		if !near(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if o.ShedCount != 11998 || o.OtherErrors != 2 || o.ShedCodes["connect_refused"] != 0 {
		t.Errorf("shed %d (codes %v), other errors %d; want 11998 shed, 2 others", o.ShedCount, o.ShedCodes, o.OtherErrors)
	}
}

func TestIsShed(t *testing.T) {
	for code, want := range map[string]bool{
		"http_503_lag_shedding": true, "http_429_rate_limited": true, "ws_503_unavailable": true, "grpc_503_lag_shedding": true,
		"grpc_unavailable": true, "grpc_resource_exhausted": true,
		"http_500_internal": false, "http_400_bad_request": false, "connect_refused": false, "timeout": false, "result_model_error": false,
		"http_5030_x": false,
	} {
		if got := isShed(code); got != want {
			t.Errorf("isShed(%q) = %v, want %v", code, got, want)
		}
	}
}

// TestOverloadChecks: goodput past the sustainable rate is judged against
// the best step's, the admitted p99 against the lowest factor's step's
// plus the queue bound, whatever order the steps ran in.
func TestOverloadChecks(t *testing.T) {
	p := DefaultParams()
	steps := func(goodput16, p99x16 float64) []*Report {
		rs := []*Report{
			overloadReport(1440, 43200, 43000, 200, 38880, 38800, 1436, 500, 1.6), // 1.2×: the peak
			overloadReport(1200, 36000, 36000, 0, 32400, 32400, 1200, 400, 1.5),   // 1.0×: the latency reference
			overloadReport(1920, 57600, 40000, 17600, 51840, 40000, goodput16, p99x16, 1.6),
		}
		for i, f := range []float64{1.2, 1, 1.6} {
			rs[i].Overload = overloadFigures(f, rs[i])
		}
		return rs
	}
	check := func(rs []*Report, prefix string) Check {
		t.Helper()
		for _, c := range rs[len(rs)-1].Checks {
			if strings.HasPrefix(c.Name, prefix) {
				return c
			}
		}
		t.Fatalf("no check %q in %v", prefix, rs[len(rs)-1].Checks)
		return Check{}
	}
	for _, c := range []struct {
		name                string
		goodput16, p99x16   float64
		wantGood, wantBound bool
	}{
		{"holds", 1400, 2400, true, true},
		{"goodput collapses", 1300, 800, false, true}, // 1300/1436 = 90.5 %
		{"latency grows", 1400, 2401, true, false},    // 400 ms + 2 s
		{"both", 900, 5000, false, false},
		// 1.6× is the peak; 1.2× served all it was offered: not overloaded
		{"fully served below a higher peak", 1900, 800, true, true},
	} {
		rs := steps(c.goodput16, c.p99x16)
		overloadChecks(p, rs)
		if g := check(rs, "overload: goodput").Pass; g != c.wantGood {
			t.Errorf("%s: goodput check %v, want %v (%s)", c.name, g, c.wantGood, check(rs, "overload: goodput").Detail)
		}
		if b := check(rs, "overload: admitted").Pass; b != c.wantBound {
			t.Errorf("%s: latency check %v, want %v (%s)", c.name, b, c.wantBound, check(rs, "overload: admitted").Detail)
		}
		best := 0.0
		for _, r := range rs {
			best = max(best, r.Overload.GoodputOfPeak)
		}
		if !near(best, 1) {
			t.Errorf("%s: the peak step's share = %v, want 1", c.name, best)
		}
		for i, r := range rs {
			if !slices.ContainsFunc(r.Checks, func(ch Check) bool { return strings.HasPrefix(ch.Name, "overload: step") }) {
				t.Errorf("%s: step %d has no figures check", c.name, i+1)
			}
		}
	}
}

func TestOverloadParams(t *testing.T) {
	if err := DefaultParams().validate([]string{"overload"}); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mod := range map[string]func(*Params){
		"no rate":            func(p *Params) { p.OverloadRate = 0 },
		"no factors":         func(p *Params) { p.OverloadFactors = nil },
		"zero factor":        func(p *Params) { p.OverloadFactors = []float64{1, 0} },
		"step within warmup": func(p *Params) { p.OverloadStepTime = p.Warmup },
		"no queue bound":     func(p *Params) { p.OverloadQueue = 0 },
		"low above high":     func(p *Params) { p.OverloadLagHigh, p.OverloadLagLow = 100, 100 },
		"low without high":   func(p *Params) { p.OverloadLagLow = 100 },
		"negative mark":      func(p *Params) { p.OverloadLagHigh = -1 },
		"negative queue":     func(p *Params) { p.OverloadQueueHigh = -1 },
	} {
		p := DefaultParams()
		mod(&p)
		if err := p.validate([]string{"overload"}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if slices.Contains(SuiteNames(), "overload") || !slices.Contains(Names(), "overload") {
		t.Errorf("all = %v, every scenario = %v: overload only by name", SuiteNames(), Names())
	}
}

// --overload-lag-high, -low and --overload-queue-high reach the stack's
// ingress beside its default flags; without them ingress keeps its own
// defaults.
func TestOverloadStackMarks(t *testing.T) {
	s, _ := ScenarioByName("overload")
	p := DefaultParams()
	var cfg StackConfig
	s.stack(p, &cfg)
	if cfg.IngressArgs != nil {
		t.Errorf("no marks given: ingress args %v, want the stack's defaults (nil)", cfg.IngressArgs)
	}
	p.OverloadLagHigh, p.OverloadLagLow, p.OverloadQueueHigh = 2400, 1800, 1500*time.Millisecond
	s.stack(p, &cfg)
	got := strings.Join(cfg.IngressArgs, " ")
	for _, want := range []string{"--interactive-lag-high 2400", "--interactive-lag-low 1800", "--interactive-queue-high 1.5s", strings.Join(defaultIngressArgs(), " ")} {
		if !strings.Contains(got, want) {
			t.Errorf("ingress args %q lack %q", got, want)
		}
	}
	var queueOnly StackConfig
	p = DefaultParams()
	p.OverloadQueueHigh = 2 * time.Second
	s.stack(p, &queueOnly)
	if got, want := strings.Join(queueOnly.IngressArgs, " "), strings.Join(append(defaultIngressArgs(), "--interactive-queue-high", "2s"), " "); got != want {
		t.Errorf("queue mark alone: ingress args %q, want %q", got, want)
	}
}
