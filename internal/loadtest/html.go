package loadtest

import (
	"fmt"
	"html"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

// WriteHTML writes the suite as one self-contained HTML page: tables and
// inline SVG charts (latency over time, throughput, errors, consumer lag,
// CPU and memory), with no script and nothing fetched, so it opens
// offline.
func WriteHTML(w io.Writer, s *Suite) error {
	var b strings.Builder
	b.WriteString(`<!doctype html><html><head><meta charset="utf-8"><title>Switchboard load test</title><style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1120px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.pass{color:#080}.fail{color:#b00;font-weight:bold}.label{background:#fff3cd;padding:.3em .6em;display:inline-block}
h2{border-top:2px solid #ddd;padding-top:.6em}svg{display:block;margin:.4em 0}code{background:#f6f6f6}
</style></head><body><h1>Switchboard load test</h1>`)
	fmt.Fprintf(&b, "<p>Started %s. Command: <code>%s</code></p>", s.StartedAt.Format("2006-01-02 15:04:05 MST"), esc(s.Command))
	if s.Label != "" {
		fmt.Fprintf(&b, `<p class="label">%s</p>`, esc(s.Label))
	}
	b.WriteString("<table><tr><th>scenario</th><th>class</th><th>offered/s</th><th>achieved/s</th><th>success</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>lost</th><th>dup</th><th>order</th><th>checks</th></tr>")
	for _, r := range s.Reports {
		for _, name := range r.classNames() {
			c := r.Classes[name]
			fmt.Fprintf(&b, `<tr><td><a href="#%s">%s</a></td><td>%s</td><td>%.1f</td><td>%.1f</td><td>%.3f%%</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%d</td><td>%d</td><td>%d</td><td>%s</td></tr>`,
				esc(r.Scenario), esc(r.Scenario), esc(name), c.OfferedRate, c.AchievedRate, 100*c.SuccessRate, c.LatencyMS.P50, c.LatencyMS.P99, c.LatencyMS.P999, c.LatencyMS.Max,
				c.Lost, c.Duplicates, c.OrderViolations, checkMark(r.Checks))
		}
	}
	b.WriteString("</table>")
	for _, r := range s.Reports {
		writeReportHTML(&b, r)
	}
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func checkMark(cs []Check) string {
	failed := 0
	for _, c := range cs {
		if !c.Pass {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Sprintf(`<span class="fail">%d failed</span>`, failed)
	}
	return `<span class="pass">all pass</span>`
}

func esc(s string) string { return html.EscapeString(s) }

func writeReportHTML(b *strings.Builder, r *Report) {
	fmt.Fprintf(b, `<h2 id="%s">%s</h2><p>%s. Driver <b>%s</b>, reader <b>%s</b>; %.0f s of load, the first %.0f s excluded from the figures.</p>`,
		esc(r.Scenario), esc(r.Scenario), esc(r.Description), esc(r.Driver), esc(r.Reader), r.DurationS, r.WarmupS)
	if len(r.Settings) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Settings)) {
			parts = append(parts, esc(k)+"="+esc(r.Settings[k]))
		}
		fmt.Fprintf(b, "<p>Settings: <code>%s</code></p>", strings.Join(parts, " "))
	}
	b.WriteString("<ul>")
	for _, c := range r.Checks {
		cls, mark := "pass", "PASS"
		if !c.Pass {
			cls, mark = "fail", "FAIL"
		}
		fmt.Fprintf(b, `<li><span class="%s">%s</span> %s: %s</li>`, cls, mark, esc(c.Name), esc(c.Detail))
	}
	b.WriteString("</ul>")
	b.WriteString("<table><tr><th>class</th><th>distribution (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>")
	row := func(class, name string, p Percentiles) {
		if p.Count == 0 {
			return
		}
		fmt.Fprintf(b, "<tr><td>%s</td><td>%s</td><td>%d</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td><td>%.1f</td></tr>", esc(class), name, p.Count, p.P50, p.P90, p.P99, p.P999, p.Max)
	}
	for _, name := range r.classNames() {
		c := r.Classes[name]
		row(name, "end to end", c.LatencyMS)
		row(name, "time to first chunk", c.TTFCMS)
		row(name, "model (router's timing)", c.ModelMS)
		row(name, "overhead (e2e − model, per request)", c.OverheadMS)
		row(name, "ordered limit (earliest answer in any order-keeping system)", c.OrderedLimitMS)
		row(name, "overhead over the ordered limit (answer − earliest)", c.OverLimitMS)
		if c.OverheadVsDirectMS != nil {
			row(name, "e2e − direct model calls (same run)", *c.OverheadVsDirectMS)
		}
	}
	if r.Direct != nil {
		row("direct", "model called directly", r.Direct.LatencyMS)
	}
	b.WriteString("</table><table><tr><th>class</th><th>sent</th><th>measured</th><th>accepted</th><th>send errors</th><th>ok</th><th>error results</th><th>lost</th><th>dup</th><th>order</th><th>conversations (with loss/dup/order)</th></tr>")
	for _, name := range r.classNames() {
		c := r.Classes[name]
		fmt.Fprintf(b, "<tr><td>%s</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d (%d/%d/%d)</td></tr>",
			esc(name), c.Sent, c.Measured, c.Accepted, c.SendErrors, c.Succeeded, c.Failed, c.Lost, c.Duplicates, c.OrderViolations,
			c.Conversations, c.ConversationsWithLoss, c.ConversationsWithDuplicates, c.ConversationsWithOrderViolations)
	}
	b.WriteString("</table>")
	for _, name := range r.classNames() {
		if ws := r.Classes[name].WorstConversations; len(ws) > 0 {
			fmt.Fprintf(b, "<p>Worst conversations (%s):</p><table><tr><th>conversation</th><th>lost</th><th>dup</th><th>order</th></tr>", esc(name))
			for _, w := range ws {
				fmt.Fprintf(b, "<tr><td>%s</td><td>%d</td><td>%d</td><td>%d</td></tr>", esc(w.ID), w.Lost, w.Duplicates, w.OrderViolations)
			}
			b.WriteString("</table>")
		}
	}
	writeRetryHTML(b, r)
	if len(r.Errors) > 0 {
		fmt.Fprintf(b, "<p>Errors by code: <code>%s</code></p>", esc(formatCounts(r.Errors)))
	}
	if m := r.Malformed; m != nil {
		fmt.Fprintf(b, "<p>Malformed inputs: %d sent, %d handled, %d not.</p><table><tr><th>kind</th><th>outcomes</th></tr>", m.Sent, m.Handled, m.Unhandled)
		for _, k := range slices.Sorted(maps.Keys(m.ByKind)) {
			fmt.Fprintf(b, "<tr><td>%s</td><td style='text-align:left'>%s</td></tr>", esc(k), esc(formatCounts(m.ByKind[k])))
		}
		b.WriteString("</table>")
	}
	if len(r.Processes) > 0 {
		b.WriteString("<table><tr><th>process</th><th>CPU s</th><th>cores</th><th>CPU ms/request</th><th>max RSS MB</th><th>restarts</th></tr>")
		for _, name := range slices.Sorted(maps.Keys(r.Processes)) {
			p := r.Processes[name]
			fmt.Fprintf(b, "<tr><td>%s</td><td>%.1f</td><td>%.2f</td><td>%.3f</td><td>%.1f</td><td>%d</td></tr>", esc(name), p.CPUSeconds, p.AvgCores, p.CPUPerRequestMS, p.MaxRSSMB, p.Restarts)
		}
		b.WriteString("</table>")
	}
	if len(r.Events) > 0 {
		b.WriteString("<p>Events:</p><ul>")
		for _, e := range r.Events {
			fmt.Fprintf(b, "<li>%.1f s: %s</li>", e.T, esc(e.What))
		}
		b.WriteString("</ul>")
	}
	var lat, thr, errs []line
	for i, name := range r.classNames() {
		cs := r.Series.Classes[name]
		if cs == nil {
			continue
		}
		lat = append(lat, line{name + " p50", palette(2 * i), cs.P50MS}, line{name + " p99", palette(2*i + 1), cs.P99MS})
		thr = append(thr, line{name + " sent/s", palette(2 * i), cs.Sent}, line{name + " answered/s", palette(2*i + 1), cs.Answered})
		errs = append(errs, line{name + " errors/s", palette(2*i + 1), cs.Errors})
	}
	b.WriteString(svgChart("End-to-end latency by second of answer (ms)", lat, r.Events))
	b.WriteString(svgChart("Throughput (requests per second)", thr, r.Events))
	b.WriteString(svgChart("Errors per second (failed sends and error results)", errs, r.Events))
	b.WriteString(svgChart("Consumer lag of the router group (records)", named(r.Series.Lag), r.Events))
	b.WriteString(svgChart("CPU (cores) per process", named(r.Series.CPU), r.Events))
	b.WriteString(svgChart("Resident memory (MB) per process", named(r.Series.RSSMB), r.Events))
	if len(r.Series.Goroutines) > 0 {
		b.WriteString(svgChart("Goroutines per service", named(r.Series.Goroutines), r.Events))
	}
	if len(r.Series.LoadAverage) > 0 {
		b.WriteString(svgChart("Machine load average (1 min)", []line{{"load average", palette(0), r.Series.LoadAverage}}, r.Events))
	}
}

type line struct {
	name  string
	color string
	pts   []Point
}

func named(m map[string][]Point) []line {
	var out []line
	for i, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, line{k, palette(i), m[k]})
	}
	return out
}

func palette(i int) string {
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}
	return colors[i%len(colors)]
}

// svgChart draws lines on shared axes, with events as dashed verticals.
func svgChart(title string, lines []line, events []Event) string {
	const W, H, L, R, T, B = 1060.0, 240.0, 60.0, 280.0, 24.0, 28.0
	var xmax, ymax float64
	n := 0
	for _, l := range lines {
		for _, p := range l.pts {
			xmax, ymax = math.Max(xmax, p.T), math.Max(ymax, p.V)
			n++
		}
	}
	if n == 0 {
		return fmt.Sprintf("<p><i>%s: no samples.</i></p>", esc(title))
	}
	for _, e := range events {
		xmax = math.Max(xmax, e.T)
	}
	xmax = math.Max(xmax, 1)
	ymax = niceCeil(math.Max(ymax, 1e-9))
	px := func(t float64) float64 { return L + (W-L-R)*t/xmax }
	py := func(v float64) float64 { return H - B - (H-T-B)*v/ymax }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-size="11"><text x="%.0f" y="14" font-weight="bold">%s</text>`, W, H, L, esc(title))
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`, L, T, W-L-R, H-T-B)
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%.0f" y="%.1f" text-anchor="end">%s</text>`,
			L, W-R, py(v), py(v), L-4, py(v)+4, shortNum(v))
	}
	for i := 0; i <= 6; i++ {
		t := xmax * float64(i) / 6
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%.0fs</text>`, px(t), H-B+14, t)
	}
	for _, e := range events {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#b00" stroke-dasharray="4 3"><title>%s</title></line>`, px(e.T), px(e.T), T, H-B, esc(e.What))
	}
	for i, l := range lines {
		if len(l.pts) == 0 {
			continue
		}
		var pts []string
		for _, p := range l.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.T), py(p.V)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, l.color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f">%s</text>`, W-R+10, T+float64(i)*16, l.color, W-R+24, T+float64(i)*16+9, esc(l.name))
	}
	b.WriteString("</svg>")
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 100 || v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

// writeRetryHTML writes the success before and after retries (retry.go)
// and the recovery after each fault (recovery.go).
func writeRetryHTML(b *strings.Builder, r *Report) {
	b.WriteString("<table><tr><th>class</th><th>success</th><th>success before retries (first attempt)</th><th>requests resent</th><th>resends</th></tr>")
	for _, name := range r.classNames() {
		c := r.Classes[name]
		fmt.Fprintf(b, "<tr><td>%s</td><td>%.3f %%</td><td>%.3f %%</td><td>%d</td><td>%d</td></tr>", esc(name), 100*c.SuccessRate, 100*c.SuccessRateFirstAttempt, c.Retried, c.Resends)
	}
	b.WriteString("</table>")
	if r.Retries > 0 {
		fmt.Fprintf(b, "<p>Retries: at most %d resends a request within %.0f s of its intended send time, same Idempotency-Key; resent after: <code>%s</code></p>",
			r.Retries, r.RetryBudgetS, esc(formatCounts(r.Resent)))
	} else {
		b.WriteString("<p>Retries: none (each request sent once).</p>")
	}
	rec := r.Recovery
	if rec == nil {
		return
	}
	fmt.Fprintf(b, "<p>Recovery (%s): p99 over %.0f s windows of the requests sent after each restart, back within %.1f× the baseline p99 %.1f ms (bound %.1f ms) for %d windows in a row; target %.0f s.</p>",
		esc(rec.Class), rec.WindowS, RecoveryFactor, rec.BaselineP99MS, rec.BoundMS, RecoveryHold, rec.TargetS)
	b.WriteString("<table><tr><th>fault</th><th>restart (s)</th><th>recovered after (s)</th><th>failed</th><th style='text-align:left'>window p99s (ms; −1: failed)</th></tr>")
	for _, f := range rec.Faults {
		after := "not recovered"
		if f.RecoveredAfterS != nil {
			after = fmt.Sprintf("%.0f", *f.RecoveredAfterS)
		}
		fmt.Fprintf(b, "<tr><td>%s</td><td>%.1f</td><td>%s</td><td>%d</td><td style='text-align:left'>%s</td></tr>", esc(f.Fault), f.RestartS, after, f.Failed, esc(fmt.Sprint(f.Windows)))
	}
	b.WriteString("</table>")
}
