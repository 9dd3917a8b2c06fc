package loadtest

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"runtime"
	"slices"
	"time"
)

// The capacity scenario: baseline steps at a rising rate (CapacityStart,
// then ×CapacityFactor each step), each CapacityStepTime long on a fresh
// stack, until a step misses the SLO or CapacityMaxSteps have run. The
// SLO of a step: nothing lost, success at least CapacityMinSuccess, at
// least 90 % of the offered rate achieved (the step's edges cost some),
// and the overhead over the ordered limit at p99 at most CapacitySLOMS. The highest step that
// met it is the sustainable rate; at the first that did not, the report
// says which limit was reached first (capacityLimit).

// capacitySteps runs the steps of s and returns their reports, the last
// of which carries the summary.
func capacitySteps(ctx context.Context, sc SuiteConfig, s Scenario) ([]*Report, error) {
	p := sc.Params
	var reports []*Report
	var good, first *Report
	goodRate, rate := 0.0, p.CapacityStart
	for step := 1; step <= p.CapacityMaxSteps; step++ {
		rep, err := runStep(ctx, sc, s, step, rate, p.CapacityStepTime)
		if err != nil {
			return reports, err
		}
		reports = append(reports, rep)
		if first == nil {
			first = rep
		}
		met, detail := capacitySLO(p, rep)
		rep.Checks = append(rep.Checks, Check{Name: fmt.Sprintf("capacity: step %d at %.0f req/s", step, rate), Pass: true,
			Detail: detail})
		if !met {
			summary := Check{Name: "capacity: highest sustainable rate", Pass: good != nil}
			if good == nil {
				summary.Detail = fmt.Sprintf("none: the first step, %.0f req/s, missed the SLO (%s); first limit: %s", rate, detail, capacityLimit(rep, first))
			} else {
				summary.Detail = fmt.Sprintf("%.0f req/s (%s); at %.0f req/s the SLO broke (%s); first limit: %s",
					goodRate, good.Scenario, rate, detail, capacityLimit(rep, first))
			}
			rep.Checks = append(rep.Checks, summary)
			return reports, nil
		}
		good, goodRate = rep, rate
		rate *= p.CapacityFactor
	}
	last := reports[len(reports)-1]
	last.Checks = append(last.Checks, Check{Name: "capacity: highest sustainable rate", Pass: true,
		Detail: fmt.Sprintf("at least %.0f req/s: every one of the %d steps met the SLO (raise --capacity-max-steps)", goodRate, len(reports))})
	return reports, nil
}

// runStep runs step (from 1) of a stepped scenario s (capacity,
// overload): s's load at rate for d, on a fresh stack when sc starts
// stacks (under <stack dir>/<s>-stepNN). The report is named <s>-NN and
// its settings carry the rate.
func runStep(ctx context.Context, sc SuiteConfig, s Scenario, step int, rate float64, d time.Duration) (*Report, error) {
	stepSc := sc
	stepSc.Params.Rate, stepSc.Params.Duration = rate, d
	if sc.Stack.Dir != "" {
		stepSc.Stack.Dir = filepath.Join(sc.Stack.Dir, fmt.Sprintf("%s-step%02d", s.Name, step))
	}
	rep, err := runScenario(ctx, stepSc, s)
	if err != nil {
		return nil, fmt.Errorf("step %d (%.0f req/s): %w", step, rate, err)
	}
	rep.Scenario = fmt.Sprintf("%s-%02d", s.Name, step)
	rep.Settings["rate"] = fmt.Sprintf("%.0f", rate)
	return rep, nil
}

// capacitySLO reports whether rep's interactive class met the SLO, and
// the figures.
func capacitySLO(p Params, rep *Report) (bool, string) {
	c := rep.Classes[classInteractive]
	if c == nil {
		return false, "no interactive requests measured"
	}
	met := c.Lost == 0 && c.SuccessRate >= p.CapacityMinSuccess && c.AchievedRate >= 0.9*c.OfferedRate &&
		c.OverLimitMS.P99 <= float64(p.CapacitySLOMS)
	word := "met"
	if !met {
		word = "missed"
	}
	return met, fmt.Sprintf("SLO %s: achieved %.0f of %.0f req/s, success %.3f%%, lost %d, overhead over the ordered limit p99 %.0f ms (SLO: p99 ≤ %d ms, success ≥ %.2f%%, nothing lost, ≥ 90%% of the offered rate achieved)",
		word, c.AchievedRate, c.OfferedRate, 100*c.SuccessRate, c.Lost, c.OverLimitMS.P99, p.CapacitySLOMS, 100*p.CapacityMinSuccess)
}

// capacityLimit names what limited rep's step first: the CPU (the
// processes together near the machine's cores), the router group's lag
// (rising to the end), refusals (admission or a limit), or the model
// backend (its time rising against the first step's).
func capacityLimit(rep, first *Report) string {
	total, busiest, most := 0.0, "", 0.0
	for _, name := range slices.Sorted(maps.Keys(rep.Processes)) {
		pr := rep.Processes[name]
		total += pr.AvgCores
		if pr.AvgCores > most {
			busiest, most = name, pr.AvgCores
		}
	}
	cores := float64(runtime.NumCPU())
	load := ""
	if la := rep.Series.LoadAverage; len(la) > 0 {
		load = fmt.Sprintf("; machine load average %.1f at the end", la[len(la)-1].V)
	}
	if total >= 0.85*cores {
		pr := rep.Processes[busiest]
		return fmt.Sprintf("CPU: the stack's processes used %.2f of %.0f cores; the busiest, %s, %.2f cores (%.3f ms per request)%s",
			total, cores, busiest, most, pr.CPUPerRequestMS, load)
	}
	for topic, pts := range rep.Series.Lag {
		if n := len(pts); n >= 4 && pts[n-1].V > 500 && pts[n-1].V > 2*pts[n/2].V {
			return fmt.Sprintf("lag: the router group fell behind on %s (%.0f records at mid-run, %.0f at the end)%s", topic, pts[n/2].V, pts[n-1].V, load)
		}
	}
	if len(rep.Errors) > 0 {
		return fmt.Sprintf("a budget: requests were refused or failed (%v)%s", rep.Errors, load)
	}
	c, f := rep.Classes[classInteractive], first.Classes[classInteractive]
	if c != nil && f != nil && f.ModelMS.P99 > 0 && c.ModelMS.P99 > 1.5*f.ModelMS.P99 {
		return fmt.Sprintf("the model backend: its p99 rose from %.0f ms (first step) to %.0f ms%s", f.ModelMS.P99, c.ModelMS.P99, load)
	}
	return fmt.Sprintf("none stood out: the stack's processes used %.2f of %.0f cores (busiest %s, %.2f), no rising lag, no refusals%s",
		total, cores, busiest, most, load)
}
