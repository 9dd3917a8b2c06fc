package loadtest

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
)

// The overload scenario: baseline steps on a fresh stack each, at
// OverloadRate (a sustainable rate, e.g. the capacity scenario's) times
// each of OverloadFactors (default 1.0, 1.2, 1.6), OverloadStepTime long.
// It asks what happens past the sustainable rate (issue 18): the stack
// should shed the excess (429/503) and keep serving what it admitted at
// its peak rate, in a bounded time. Each step's report carries the
// figures (OverloadStep); the last one carries the two checks:
//   - goodput (successful answers per second) at every step past the
//     sustainable rate (factor above 1) at least overloadMinGoodput of
//     the peak step's, or of its own offered rate where that is lower (a
//     step the stack fully served is not overloaded, whatever a higher
//     step reached);
//   - the admitted requests' end-to-end p99 at every step at most the
//     first step's (the lowest factor's) plus OverloadQueue (default
//     2 s): the work the stack takes in waits a bounded time, a couple
//     of seconds of queue, rather than for as long as the overload lasts
//     (a multiple of the first step's p99 would not do: that p99 is a
//     few hundred ms, less than one of ingress's one-second lag reads
//     plus router-worker's one-second commit interval, the delay with
//     which lag-driven shedding sees a backlog at all).

// overloadMinGoodput is issue 18's target: goodput under overload at least
// 95 % of the peak.
const overloadMinGoodput = 0.95

// OverloadStep is one overload step's figures. Rates are per second of
// the measured window. Accepted and refused counts cover the whole step
// (warmup included), so the admitted and shed rates are the offered rate
// times their shares of the requests sent.
type OverloadStep struct {
	Factor float64 `json:"factor"`
	// Offered is the measured offered rate; Admitted the share of it
	// ingress accepted; Shed the share it refused with 429 or 503 (load
	// shedding, rate and in-flight limits). Goodput is the successful
	// answers per second that arrived within the measured window (the
	// terminal answers of each second, times the measured requests'
	// success share): what the stack delivered while it was overloaded,
	// not counting a backlog answered after the load stopped.
	Offered  float64 `json:"offered_rate"`
	Admitted float64 `json:"admitted_rate"`
	Shed     float64 `json:"shed_rate"`
	Goodput  float64 `json:"goodput"`
	// GoodputOfPeak is Goodput over the highest step's goodput.
	GoodputOfPeak float64 `json:"goodput_of_peak"`
	// Sent, Accepted, ShedCount and OtherErrors count the step's requests
	// (warmup included); ShedCodes are the refusals by code.
	Sent        int            `json:"sent"`
	Accepted    int            `json:"accepted"`
	ShedCount   int            `json:"shed"`
	OtherErrors int            `json:"other_send_errors"`
	ShedCodes   map[string]int `json:"shed_codes,omitempty"`
	// Lost, Duplicates and OrderViolations are of the accepted requests.
	Lost            int `json:"lost"`
	Duplicates      int `json:"duplicates"`
	OrderViolations int `json:"order_violations"`
	// LatencyMS is the admitted requests' end to end (successful ones),
	// OverLimitMS their overhead over the ordered limit; LateP99MS the
	// median of the per-second p99s of the step's last quarter (does the
	// latency level off or keep growing?).
	LatencyMS   Percentiles `json:"latency_ms"`
	OverLimitMS Percentiles `json:"overhead_over_ordered_limit_ms"`
	LateP99MS   float64     `json:"late_p99_ms"`
	// StackCores are the cores the services (ingress, router-worker,
	// egress) used; CPUPerAnswerMS their CPU per successful answer.
	StackCores     float64 `json:"stack_cores"`
	CPUPerAnswerMS float64 `json:"cpu_per_answer_ms"`
	// TotalCores are the cores every sampled process used (the load test,
	// modelsim and the broker included).
	TotalCores float64 `json:"total_cores"`
}

// overloadSteps runs the steps of s and returns their reports, the last of
// which carries the checks.
func overloadSteps(ctx context.Context, sc SuiteConfig, s Scenario) ([]*Report, error) {
	p := sc.Params
	var reports []*Report
	for i, f := range p.OverloadFactors {
		rep, err := runStep(ctx, sc, s, i+1, f*p.OverloadRate, p.OverloadStepTime)
		if err != nil {
			return reports, err
		}
		rep.Settings["factor"] = fmt.Sprint(f)
		rep.Overload = overloadFigures(f, rep)
		reports = append(reports, rep)
	}
	overloadChecks(p, reports)
	return reports, nil
}

// overloadFigures computes a step's figures from its report (all but
// GoodputOfPeak, which needs every step).
func overloadFigures(factor float64, rep *Report) *OverloadStep {
	o := &OverloadStep{Factor: factor, ShedCodes: map[string]int{}}
	for code, n := range rep.Errors {
		if isShed(code) {
			o.ShedCount += n
			o.ShedCodes[code] = n
		}
	}
	for name, pr := range rep.Processes {
		o.TotalCores += pr.AvgCores
		if isService(name) {
			o.StackCores += pr.AvgCores
		}
	}
	c := rep.Classes[classInteractive]
	if c == nil {
		return o
	}
	o.Offered, o.Sent, o.Accepted = c.OfferedRate, c.Sent, c.Accepted
	o.OtherErrors = max(0, c.SendErrors-o.ShedCount)
	o.Lost, o.Duplicates, o.OrderViolations = c.Lost, c.Duplicates, c.OrderViolations
	o.LatencyMS, o.OverLimitMS = c.LatencyMS, c.OverLimitMS
	if c.Sent > 0 {
		o.Admitted = c.OfferedRate * float64(c.Accepted) / float64(c.Sent)
		o.Shed = c.OfferedRate * float64(o.ShedCount) / float64(c.Sent)
	}
	if cs := rep.Series.Classes[classInteractive]; cs != nil {
		if c.Answered > 0 {
			o.Goodput = windowRate(cs.Answered, rep.WarmupS, rep.DurationS) * float64(c.Succeeded) / float64(c.Answered)
		}
		o.LateP99MS = lateMedian(cs.P99MS, rep.WarmupS, rep.DurationS)
	}
	if o.Goodput > 0 {
		o.CPUPerAnswerMS = 1000 * o.StackCores / o.Goodput
	}
	return o
}

// windowRate is the mean per second of a per-second series (a point at T
// counts [T, T+1) s) over the seconds wholly within [from, to).
func windowRate(pts []Point, from, to float64) float64 {
	first, last := math.Ceil(from), math.Floor(to)-1
	if last < first {
		return 0
	}
	sum := 0.0
	for _, p := range pts {
		if p.T >= first && p.T <= last {
			sum += p.V
		}
	}
	return sum / (last - first + 1)
}

// isShed tells a refusal by load shedding or a limit (429 or 503 from an
// entry point) from other send errors.
func isShed(code string) bool {
	for _, via := range []string{"http_", "ws_", "grpc_"} {
		if rest, ok := strings.CutPrefix(code, via); ok {
			return strings.HasPrefix(rest, "429_") || strings.HasPrefix(rest, "503_") ||
				rest == "unavailable" || rest == "resource_exhausted"
		}
	}
	return false
}

// isService tells the pipeline's own processes (every instance) from the
// load test, modelsim and the broker.
func isService(name string) bool {
	for _, s := range []string{ProcIngress, ProcRouter, ProcEgress} {
		if name == s || strings.HasPrefix(name, s+"-") {
			return true
		}
	}
	return false
}

// lateMedian is the median of the points of the last quarter of the
// measured window [warmup, duration] (seconds), 0 without any.
func lateMedian(pts []Point, warmup, duration float64) float64 {
	from := duration - (duration-warmup)/4
	var vs []float64
	for _, p := range pts {
		if p.T >= from && p.T <= duration {
			vs = append(vs, p.V)
		}
	}
	if len(vs) == 0 {
		return 0
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// overloadChecks fills every step's GoodputOfPeak, adds each step's
// figures as a check to its report and the scenario's checks to the last.
func overloadChecks(p Params, reports []*Report) {
	var steps []*OverloadStep
	for _, r := range reports {
		if r.Overload != nil {
			steps = append(steps, r.Overload)
		}
	}
	if len(steps) == 0 {
		return
	}
	peak, base := steps[0], steps[0]
	for _, o := range steps {
		if o.Goodput > peak.Goodput {
			peak = o
		}
		if o.Factor < base.Factor {
			base = o
		}
	}
	for _, o := range steps {
		if peak.Goodput > 0 {
			o.GoodputOfPeak = o.Goodput / peak.Goodput
		}
	}
	bound := base.LatencyMS.P99 + float64(p.OverloadQueue.Milliseconds())
	goodOK, latOK := true, true
	var table []string
	for i, r := range reports {
		o := r.Overload
		if o == nil {
			continue
		}
		if o.Factor > 1 {
			goodOK = goodOK && o.Goodput >= overloadMinGoodput*min(peak.Goodput, o.Offered)
		}
		latOK = latOK && o.LatencyMS.Count > 0 && o.LatencyMS.P99 <= bound
		line := overloadLine(o)
		r.Checks = append(r.Checks, Check{Name: fmt.Sprintf("overload: step %d at %.1f× (%.0f req/s)", i+1, o.Factor, o.Factor*p.OverloadRate),
			Pass: true, Detail: line})
		table = append(table, fmt.Sprintf("%.1f×: %s", o.Factor, line))
	}
	last := reports[len(reports)-1]
	last.Checks = append(last.Checks,
		Check{Name: fmt.Sprintf("overload: goodput at every step past the sustainable rate ≥ %.0f%% of the peak", 100*overloadMinGoodput), Pass: goodOK,
			Detail: fmt.Sprintf("peak %.0f answers/s at %.1f×; lowest share past 1.0× (of the peak, or of the step's offered rate where lower) %.1f%%", peak.Goodput, peak.Factor, 100*lowest(steps, peak.Goodput))},
		Check{Name: fmt.Sprintf("overload: admitted end-to-end p99 at every step ≤ the %.1f× step's + %v", base.Factor, p.OverloadQueue), Pass: latOK,
			Detail: fmt.Sprintf("bound %.0f ms (%.1f× step's p99 %.0f ms + %v); highest %.0f ms", bound, base.Factor, base.LatencyMS.P99, p.OverloadQueue, highestP99(steps))},
		Check{Name: "overload: steps", Pass: true, Detail: strings.Join(table, " | ")})
}

// overloadLine states a step's figures in one line.
func overloadLine(o *OverloadStep) string {
	codes := "none"
	if len(o.ShedCodes) > 0 {
		codes = formatCounts(o.ShedCodes)
	}
	return fmt.Sprintf("offered %.0f/s, admitted %.0f/s (%.1f%%), shed %.0f/s (%s), other send errors %d, goodput %.0f/s (%.1f%% of peak); "+
		"admitted end to end p50 %.0f / p99 %.0f ms (last quarter's per-second p99 %.0f ms), overhead over the ordered limit p50 %.0f / p99 %.0f ms; "+
		"lost %d, duplicates %d, out of order %d; services %.2f cores, %.3f ms CPU per answer; all processes %.2f cores",
		o.Offered, o.Admitted, pctOf(o.Admitted, o.Offered), o.Shed, codes, o.OtherErrors, o.Goodput, 100*o.GoodputOfPeak,
		o.LatencyMS.P50, o.LatencyMS.P99, o.LateP99MS, o.OverLimitMS.P50, o.OverLimitMS.P99,
		o.Lost, o.Duplicates, o.OrderViolations, o.StackCores, o.CPUPerAnswerMS, o.TotalCores)
}

func pctOf(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * a / b
}

// lowest is the lowest share of the goodput check: each step past 1.0×
// against the peak, or its own offered rate where that is lower.
func lowest(steps []*OverloadStep, peak float64) float64 {
	low := 1.0
	for _, o := range steps {
		if ref := min(o.Offered, peak); o.Factor > 1 && ref > 0 {
			low = min(low, o.Goodput/ref)
		}
	}
	return low
}

func highestP99(steps []*OverloadStep) float64 {
	high := 0.0
	for _, o := range steps {
		high = max(high, o.LatencyMS.P99)
	}
	return high
}
