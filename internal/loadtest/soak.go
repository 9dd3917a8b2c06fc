package loadtest

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The soak scenario (the seed's baseline held for an hour): closed-loop
// users for a long time, judged by whether the services stay flat. Its
// checks compare the first and the last quarter of the measured time
// (after the warmup) of each series: resident memory and goroutines per
// service, the router group's lag and the per-second p99.

// Flatness bounds of the soak checks: the last quarter's median may exceed
// the first quarter's by the factor plus the slack, no more.
const (
	soakRSSFactor, soakRSSSlackMB           = 1.25, 20.0
	soakGoroutineFactor, soakGoroutineSlack = 1.25, 50.0
	soakLagFactor, soakLagSlack             = 2.0, 200.0
	soakP99Factor, soakP99SlackMS           = 1.5, 20.0
)

// goroutineWatch samples go_goroutines from the services' /metrics.
type goroutineWatch struct {
	urls   map[string]string // process name -> admin base URL
	client *http.Client
	mu     sync.Mutex
	series map[string][]Point
}

func newGoroutineWatch(urls map[string]string) *goroutineWatch {
	if len(urls) == 0 {
		return nil
	}
	return &goroutineWatch{urls: urls, client: &http.Client{Timeout: 2 * time.Second}, series: map[string][]Point{}}
}

// sample reads each service's goroutine count; a service that does not
// answer (restarting) is skipped this time.
func (w *goroutineWatch) sample(ctx context.Context, t float64) {
	for name, base := range w.urls {
		n, err := goroutines(ctx, w.client, base+"/metrics")
		if err != nil {
			continue
		}
		w.mu.Lock()
		w.series[name] = append(w.series[name], Point{T: t, V: n})
		w.mu.Unlock()
	}
}

func (w *goroutineWatch) out() map[string][]Point {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string][]Point, len(w.series))
	for k, v := range w.series {
		out[k] = slices.Clone(v)
	}
	return out
}

// goroutines reads go_goroutines from a Prometheus text page.
func goroutines(ctx context.Context, cl *http.Client, url string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, err
	}
	f := fams["go_goroutines"]
	if f == nil || len(f.GetMetric()) == 0 {
		return 0, fmt.Errorf("%s: no go_goroutines", url)
	}
	return f.GetMetric()[0].GetGauge().GetValue(), nil
}

// loadAverage is the machine's one-minute load average (Linux), for the
// report's context: other work on the machine shows in every figure.
func loadAverage() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}

// quarterMedians returns the medians of pts in the first and the last
// quarter of [from, to] seconds; ok is false when either has no point.
func quarterMedians(pts []Point, from, to float64) (first, last float64, ok bool) {
	q := (to - from) / 4
	var a, b []float64
	for _, p := range pts {
		switch {
		case p.T >= from && p.T <= from+q:
			a = append(a, p.V)
		case p.T >= to-q && p.T <= to:
			b = append(b, p.V)
		}
	}
	if len(a) == 0 || len(b) == 0 {
		return 0, 0, false
	}
	return median(a), median(b), true
}

func median(v []float64) float64 {
	sort.Float64s(v)
	return v[len(v)/2]
}

// flatCheck checks that every series of m stays within factor·first+slack
// over the run.
func flatCheck(name, unit string, m map[string][]Point, from, to, factor, slack float64) Check {
	c := Check{Name: name, Pass: true}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		first, last, ok := quarterMedians(m[k], from, to)
		if !ok {
			continue
		}
		bad := last > factor*first+slack
		if bad {
			c.Pass = false
		}
		parts = append(parts, fmt.Sprintf("%s %.0f→%.0f%s", k, first, last, unit))
	}
	if len(parts) == 0 {
		return Check{Name: name, Pass: false, Detail: "no samples in the first and last quarter"}
	}
	c.Detail = fmt.Sprintf("median of the first → last quarter: %s (bound: ×%.2f + %.0f%s)", strings.Join(parts, ", "), factor, slack, unit)
	return c
}

// soakChecks judges a soak run's flatness.
func soakChecks(rep *Report) []Check {
	from, to := rep.WarmupS, rep.DurationS
	// The load test's own memory holds its ledger, and devbroker (kfake)
	// keeps every record in memory: both grow with the run by design and
	// are not judged.
	services := map[string][]Point{}
	for k, v := range rep.Series.RSSMB {
		if k != "loadtest" && k != ProcDevbroker {
			services[k] = v
		}
	}
	p99 := map[string][]Point{}
	for k, cs := range rep.Series.Classes {
		p99[k] = cs.P99MS
	}
	checks := []Check{
		flatCheck("soak: resident memory flat", " MB", services, from, to, soakRSSFactor, soakRSSSlackMB),
		flatCheck("soak: goroutines flat", "", rep.Series.Goroutines, from, to, soakGoroutineFactor, soakGoroutineSlack),
		flatCheck("soak: per-second p99 flat", " ms", p99, from, to, soakP99Factor, soakP99SlackMS),
	}
	if len(rep.Series.Lag) > 0 {
		checks = append(checks, flatCheck("soak: router group lag flat", " records", rep.Series.Lag, from, to, soakLagFactor, soakLagSlack))
	}
	if la := rep.Series.LoadAverage; len(la) > 0 {
		vs := make([]float64, len(la))
		for i, p := range la {
			vs[i] = p.V
		}
		checks = append(checks, Check{Name: "soak: machine load (context)", Pass: true,
			Detail: fmt.Sprintf("one-minute load average: median %.1f, max %.1f", median(slices.Clone(vs)), slices.Max(vs))})
	}
	return checks
}
