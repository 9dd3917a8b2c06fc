package loadtest

import (
	"fmt"
	"io"
	"strings"
)

// Metric is one row of a comparison: a name, the two values and whether
// a higher value is better (for the verdict column).
type Metric struct {
	Name         string
	A, B         float64
	HigherBetter bool
}

// Delta is B−A; Change is that relative to A (0 when A is 0).
func (m Metric) Delta() float64 { return m.B - m.A }

// Change returns (B−A)/A, or 0 when A is 0.
func (m Metric) Change() float64 {
	if m.A == 0 {
		return 0
	}
	return (m.B - m.A) / m.A
}

// Verdict says whether B is better, worse or the same as A, allowing a
// relative tolerance.
func (m Metric) Verdict(tolerance float64) string {
	d := m.Delta()
	if d == 0 || (m.A != 0 && abs(d/m.A) <= tolerance) {
		return "same"
	}
	if (d > 0) == m.HigherBetter {
		return "better"
	}
	return "worse"
}

// Comparison pairs the reports of two suites by scenario.
type Comparison struct {
	Scenario, Class string
	Metrics         []Metric
	// Missing names the side without this scenario or class ("a" or "b").
	Missing string
}

// Compare pairs a's and b's reports by scenario and class, in a's order
// followed by scenarios only b has.
func Compare(a, b *Suite) []Comparison {
	var out []Comparison
	find := func(s *Suite, name string) *Report {
		for _, r := range s.Reports {
			if r.Scenario == name {
				return r
			}
		}
		return nil
	}
	seen := map[string]bool{}
	for _, ra := range a.Reports {
		seen[ra.Scenario] = true
		rb := find(b, ra.Scenario)
		if rb == nil {
			out = append(out, Comparison{Scenario: ra.Scenario, Missing: "b"})
			continue
		}
		for _, class := range ra.classNames() {
			ca, cb := ra.Classes[class], rb.Classes[class]
			if cb == nil {
				out = append(out, Comparison{Scenario: ra.Scenario, Class: class, Missing: "b"})
				continue
			}
			out = append(out, Comparison{Scenario: ra.Scenario, Class: class, Metrics: classMetrics(ra, rb, ca, cb)})
		}
	}
	for _, rb := range b.Reports {
		if !seen[rb.Scenario] {
			out = append(out, Comparison{Scenario: rb.Scenario, Missing: "a"})
		}
	}
	return out
}

func classMetrics(ra, rb *Report, a, b *ClassReport) []Metric {
	m := []Metric{
		{"offered/s", a.OfferedRate, b.OfferedRate, true},
		{"achieved/s", a.AchievedRate, b.AchievedRate, true},
		{"success %", 100 * a.SuccessRate, 100 * b.SuccessRate, true},
		{"e2e p50 ms", a.LatencyMS.P50, b.LatencyMS.P50, false},
		{"e2e p90 ms", a.LatencyMS.P90, b.LatencyMS.P90, false},
		{"e2e p99 ms", a.LatencyMS.P99, b.LatencyMS.P99, false},
		{"e2e p99.9 ms", a.LatencyMS.P999, b.LatencyMS.P999, false},
		{"e2e max ms", a.LatencyMS.Max, b.LatencyMS.Max, false},
		{"first chunk p99 ms", a.TTFCMS.P99, b.TTFCMS.P99, false},
		{"overhead p50 ms", a.OverheadMS.P50, b.OverheadMS.P50, false},
		{"overhead p99 ms", a.OverheadMS.P99, b.OverheadMS.P99, false},
		{"over ordered limit p50 ms", a.OverLimitMS.P50, b.OverLimitMS.P50, false},
		{"over ordered limit p99 ms", a.OverLimitMS.P99, b.OverLimitMS.P99, false},
		{"lost", float64(a.Lost), float64(b.Lost), false},
		{"duplicates", float64(a.Duplicates), float64(b.Duplicates), false},
		{"order violations", float64(a.OrderViolations), float64(b.OrderViolations), false},
		{"send errors", float64(a.SendErrors), float64(b.SendErrors), false},
		{"error results", float64(a.Failed), float64(b.Failed), false},
	}
	if ra.Retries > 0 && rb.Retries > 0 { // reports from before retries have no first-attempt figures
		m = append(m, Metric{"success before retries %", 100 * a.SuccessRateFirstAttempt, 100 * b.SuccessRateFirstAttempt, true},
			Metric{"resends", float64(a.Resends), float64(b.Resends), false})
	}
	if ra.Direct != nil && rb.Direct != nil {
		// The reference tells how loaded each run's machine was.
		m = append(m, Metric{"direct model p50 ms", ra.Direct.LatencyMS.P50, rb.Direct.LatencyMS.P50, false},
			Metric{"direct model p99 ms", ra.Direct.LatencyMS.P99, rb.Direct.LatencyMS.P99, false})
	}
	m = append(m, Metric{"lag peak (records)", peak(ra.Series.Lag), peak(rb.Series.Lag), false})
	for _, p := range []string{ProcRouter, ProcIngress, ProcEgress, ProcDevbroker} {
		pa, pb := ra.Processes[p], rb.Processes[p]
		if pa != nil && pb != nil {
			m = append(m, Metric{p + " CPU ms/request", pa.CPUPerRequestMS, pb.CPUPerRequestMS, false},
				Metric{p + " max RSS MB", pa.MaxRSSMB, pb.MaxRSSMB, false})
		}
	}
	return m
}

// WriteComparison prints the comparison side by side.
func WriteComparison(w io.Writer, a, b *Suite, aName, bName string) {
	fmt.Fprintf(w, "A: %s (%s)%s\nB: %s (%s)%s\n", aName, a.StartedAt.Format("2006-01-02 15:04"), labelOf(a), bName, b.StartedAt.Format("2006-01-02 15:04"), labelOf(b))
	for _, c := range Compare(a, b) {
		title := c.Scenario
		if c.Class != "" {
			title += " / " + c.Class
		}
		if c.Missing != "" {
			fmt.Fprintf(w, "\n== %s: only in %s\n", title, strings.ToUpper(map[string]string{"a": "b", "b": "a"}[c.Missing]))
			continue
		}
		fmt.Fprintf(w, "\n== %s\n%-26s %12s %12s %12s %8s  %s\n", title, "", "A", "B", "B−A", "change", "")
		for _, m := range c.Metrics {
			fmt.Fprintf(w, "%-26s %12.2f %12.2f %+12.2f %7.1f%%  %s\n", m.Name, m.A, m.B, m.Delta(), 100*m.Change(), m.Verdict(0.05))
		}
	}
}

func labelOf(s *Suite) string {
	if s.Label == "" {
		return ""
	}
	return " [" + s.Label + "]"
}

// peak returns the highest sum over topics of samples taken at one time.
func peak(lag map[string][]Point) float64 {
	at := map[float64]float64{}
	for _, pts := range lag {
		for _, p := range pts {
			at[p.T] += p.V
		}
	}
	best := 0.0
	for _, v := range at {
		best = max(best, v)
	}
	return best
}
