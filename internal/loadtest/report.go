package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of one scenario run. Its JSON form is what
// --json writes and compare reads; field names are stable.
type Report struct {
	Scenario    string `json:"scenario"`
	Description string `json:"description"`
	// Label says under what conditions the run was made (e.g. "loaded
	// shared machine"); it is printed with every figure.
	Label     string            `json:"label,omitempty"`
	Command   string            `json:"command"`
	StartedAt time.Time         `json:"started_at"`
	Driver    string            `json:"driver"`
	Reader    string            `json:"reader"`
	Settings  map[string]string `json:"settings"`
	// DurationS is how long load was sent; WarmupS the leading part
	// excluded from the figures.
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`
	// Classes are the report's load classes, e.g. "interactive" and
	// "batch".
	Classes map[string]*ClassReport `json:"classes"`
	// Direct is the reference: the same requests sent straight to the
	// model simulator during the run.
	Direct *DirectReport `json:"direct_model,omitempty"`
	// Errors counts failed sends and error results by code.
	Errors map[string]int `json:"errors"`
	// Retries is the most resends of one request (Config.Retry.Max) and
	// RetryBudgetS the time bound of a request's resends; Resent counts
	// the refusals and broken connections answered with a resend, by code
	// (retry.go).
	Retries      int            `json:"retries"`
	RetryBudgetS float64        `json:"retry_budget_s,omitempty"`
	Resent       map[string]int `json:"resent,omitempty"`
	// Recovery is the recovery after each fault's restart (recovery.go).
	Recovery  *RecoveryReport           `json:"recovery,omitempty"`
	Malformed *MalformedReport          `json:"malformed,omitempty"`
	Processes map[string]*ProcessReport `json:"processes,omitempty"`
	Events    []Event                   `json:"events,omitempty"`
	// SSEReconnects counts the stream reader's reopened streams (sse, ws
	// or grpc; the name is the first one's).
	SSEReconnects int     `json:"sse_reconnects,omitempty"`
	Series        Series  `json:"series"`
	Checks        []Check `json:"checks"`
	// Profiles are the services' CPU and heap profiles of the measured
	// window (Config.ProfileDir), for go tool pprof.
	Profiles []string `json:"profiles,omitempty"`
	// Overload holds an overload step's figures (overload.go).
	Overload *OverloadStep `json:"overload,omitempty"`
}

// ClassReport holds the figures of one load class.
type ClassReport struct {
	Lane string `json:"lane"`
	// Mode is "open" (a rate) or "closed" (users with think time).
	Mode  string `json:"mode"`
	Users int    `json:"users,omitempty"`
	// OfferedRate is the measured requests meant per second; AchievedRate
	// the measured answers per second.
	OfferedRate  float64 `json:"offered_rate"`
	AchievedRate float64 `json:"achieved_rate"`
	Sent         int     `json:"sent"`
	// Measured are the requests meant to be sent after the warmup; every
	// figure below except Sent and the conversation counts is about them.
	Measured   int `json:"measured"`
	Accepted   int `json:"accepted"`
	SendErrors int `json:"send_errors"`
	Answered   int `json:"answered"`
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`
	// Lost, Duplicates and OrderViolations count over every request sent
	// (warmup included).
	Lost                             int `json:"lost"`
	Duplicates                       int `json:"duplicates"`
	OrderViolations                  int `json:"order_violations"`
	Conversations                    int `json:"conversations"`
	ConversationsWithLoss            int `json:"conversations_with_loss"`
	ConversationsWithDuplicates      int `json:"conversations_with_duplicates"`
	ConversationsWithOrderViolations int `json:"conversations_with_order_violations"`
	// Stored counts the requests seen in the requests topics, and
	// StoredOrderViolations those stored ahead of a request of their
	// conversation sent before them (runs with Config.CheckStoredOrder).
	Stored                                 int `json:"stored,omitempty"`
	StoredOrderViolations                  int `json:"stored_order_violations"`
	ConversationsWithStoredOrderViolations int `json:"conversations_with_stored_order_violations"`
	// WorstConversations name the conversations with the most lost,
	// duplicated and out-of-order answers (at most 10).
	WorstConversations []ConversationIssue `json:"worst_conversations,omitempty"`
	// SuccessRate is the share of measured requests answered with a final
	// result, after resends (retry.go); SuccessRateFirstAttempt the share
	// answered so without a resend: the success before retries, what a
	// client that does not retry would have seen.
	SuccessRate             float64 `json:"success_rate"`
	SuccessRateFirstAttempt float64 `json:"success_rate_first_attempt"`
	SucceededFirstAttempt   int     `json:"succeeded_first_attempt"`
	// Resends counts the measured requests' sends after their first;
	// Retried the measured requests sent more than once.
	Resends int `json:"resends"`
	Retried int `json:"retried"`
	// LatencyMS is end to end, from the intended send time to the final
	// result's arrival, of successful requests.
	LatencyMS Percentiles `json:"latency_ms"`
	// TTFCMS is from the intended send time to the first chunk.
	TTFCMS Percentiles `json:"ttfc_ms"`
	// ModelMS is the model call as the router timed it; OverheadMS is
	// end to end minus that, per request.
	ModelMS    Percentiles `json:"model_ms"`
	OverheadMS Percentiles `json:"overhead_ms"`
	// OrderedLimitMS is, per request, the earliest its final answer could
	// have come in any system that keeps conversation order, from its
	// intended send time: its model time plus the model times of the
	// earlier requests of its conversation it had to wait for. OverLimitMS
	// is the answer's arrival minus that earliest time: the overhead over
	// the ordered limit (limit.go has the formula).
	OrderedLimitMS Percentiles `json:"ordered_limit_ms"`
	OverLimitMS    Percentiles `json:"overhead_over_ordered_limit_ms"`
	// OverheadVsDirectMS is each end-to-end percentile minus the same
	// percentile of the direct model calls of the same run.
	OverheadVsDirectMS *Percentiles `json:"overhead_vs_direct_ms,omitempty"`
	SendLagMaxMS       float64      `json:"send_lag_max_ms"`
}

// ConversationIssue counts one conversation's problems.
type ConversationIssue struct {
	ID              string `json:"id"`
	Lost            int    `json:"lost"`
	Duplicates      int    `json:"duplicates"`
	OrderViolations int    `json:"order_violations"`
}

// Percentiles of a distribution, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

func (p Percentiles) minus(q Percentiles) Percentiles {
	return Percentiles{Count: p.Count, P50: p.P50 - q.P50, P90: p.P90 - q.P90, P99: p.P99 - q.P99, P999: p.P999 - q.P999,
		Max: p.Max - q.Max, Mean: p.Mean - q.Mean}
}

// DirectReport is the reference measurement: requests of the same shape
// sent straight to the model simulator during the run.
type DirectReport struct {
	Sent      int            `json:"sent"`
	Errors    map[string]int `json:"errors"`
	LatencyMS Percentiles    `json:"latency_ms"`
	TTFCMS    Percentiles    `json:"ttfc_ms"`
}

// MalformedReport counts bad inputs by kind and outcome.
type MalformedReport struct {
	Sent int `json:"sent"`
	// Handled were rejected with a clear error, dead-lettered or answered
	// with an error result; Unhandled were accepted and answered as valid,
	// or got no outcome at all.
	Handled   int                       `json:"handled"`
	Unhandled int                       `json:"unhandled"`
	ByKind    map[string]map[string]int `json:"by_kind"`
}

// ProcessReport is one process's resource use during the run.
type ProcessReport struct {
	CPUSeconds      float64 `json:"cpu_seconds"`
	CPUPerRequestMS float64 `json:"cpu_per_request_ms"`
	AvgCores        float64 `json:"avg_cores"`
	MaxRSSMB        float64 `json:"max_rss_mb"`
	Restarts        int     `json:"restarts,omitempty"`
}

// Event is something the run did to the system (chaos), at T seconds.
type Event struct {
	T    float64 `json:"t"`
	What string  `json:"what"`
}

// Check is a pass/fail statement about the run.
type Check struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// Point is one sample of a time series: T seconds since the start.
type Point struct {
	T float64 `json:"t"`
	V float64 `json:"v"`
}

// Series are the run's time series.
type Series struct {
	Classes map[string]*ClassSeries `json:"classes"`
	// Lag is the router group's lag per topic, sampled with kadm.
	Lag map[string][]Point `json:"lag,omitempty"`
	// CPU is cores used per process; RSSMB its resident memory.
	CPU   map[string][]Point `json:"cpu,omitempty"`
	RSSMB map[string][]Point `json:"rss_mb,omitempty"`
	// Goroutines per service (go_goroutines of its /metrics) and the
	// machine's one-minute LoadAverage, every 5 seconds.
	Goroutines  map[string][]Point `json:"goroutines,omitempty"`
	LoadAverage []Point            `json:"load_average,omitempty"`
}

// ClassSeries are a class's per-second series: requests meant to be sent,
// terminal answers and errors in each second, and the end-to-end latency
// of the answers of each second.
type ClassSeries struct {
	Sent     []Point `json:"sent"`
	Answered []Point `json:"answered"`
	Errors   []Point `json:"errors"`
	P50MS    []Point `json:"p50_ms"`
	P99MS    []Point `json:"p99_ms"`
	MaxMS    []Point `json:"max_ms"`
}

// Suite is the reports of several scenarios run one after another.
type Suite struct {
	Label     string    `json:"label,omitempty"`
	Command   string    `json:"command"`
	StartedAt time.Time `json:"started_at"`
	Reports   []*Report `json:"reports"`
}

// Failed reports whether any check of any report failed.
func (s *Suite) Failed() bool {
	for _, r := range s.Reports {
		for _, c := range r.Checks {
			if !c.Pass {
				return true
			}
		}
	}
	return false
}

// WriteJSON writes v, indented, to path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadSuite reads a suite or a single report (as a suite of one).
func ReadSuite(path string) (*Suite, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var probe struct {
		Reports  json.RawMessage `json:"reports"`
		Scenario string          `json:"scenario"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if probe.Reports != nil {
		var s Suite
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &s, nil
	}
	if probe.Scenario == "" {
		return nil, fmt.Errorf("%s: neither a loadtest report nor a suite", path)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Suite{Label: r.Label, Command: r.Command, StartedAt: r.StartedAt, Reports: []*Report{&r}}, nil
}

// classNames returns a report's classes, interactive first.
func (r *Report) classNames() []string {
	names := slices.Sorted(maps.Keys(r.Classes))
	slices.SortStableFunc(names, func(a, b string) int {
		switch {
		case a == classInteractive:
			return -1
		case b == classInteractive:
			return 1
		}
		return 0
	})
	return names
}

// WriteSummary prints the report for a terminal.
func (r *Report) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "\n== %s: %s\n", r.Scenario, r.Description)
	if r.Label != "" {
		fmt.Fprintf(w, "   (%s)\n", r.Label)
	}
	fmt.Fprintf(w, "   driver %s, reader %s, %.0fs of load, first %.0fs excluded\n", r.Driver, r.Reader, r.DurationS, r.WarmupS)
	for _, name := range r.classNames() {
		c := r.Classes[name]
		load := fmt.Sprintf("open loop, offered %.1f/s", c.OfferedRate)
		if c.Mode == "closed" {
			load = fmt.Sprintf("closed loop, %d users, offered %.1f/s", c.Users, c.OfferedRate)
		}
		fmt.Fprintf(w, "-- %s (%s lane): %s, achieved %.1f/s\n", name, c.Lane, load, c.AchievedRate)
		fmt.Fprintf(w, "   sent %d (measured %d), accepted %d, send errors %d, answered %d: ok %d, error results %d; success %.3f%%\n",
			c.Sent, c.Measured, c.Accepted, c.SendErrors, c.Answered, c.Succeeded, c.Failed, 100*c.SuccessRate)
		if r.Retries > 0 {
			fmt.Fprintf(w, "   retries (at most %d a request, %.0fs): success before retries %.3f%%, after %.3f%%; %d requests resent, %d resends\n",
				r.Retries, r.RetryBudgetS, 100*c.SuccessRateFirstAttempt, 100*c.SuccessRate, c.Retried, c.Resends)
		}
		fmt.Fprintf(w, "   lost %d, duplicates %d, order violations %d (conversations affected: %d, %d, %d of %d)\n",
			c.Lost, c.Duplicates, c.OrderViolations, c.ConversationsWithLoss, c.ConversationsWithDuplicates,
			c.ConversationsWithOrderViolations, c.Conversations)
		if c.Stored > 0 {
			fmt.Fprintf(w, "   in the requests topic: %d stored, %d out of the order sent (conversations affected: %d)\n",
				c.Stored, c.StoredOrderViolations, c.ConversationsWithStoredOrderViolations)
		}
		if len(c.WorstConversations) > 0 {
			var parts []string
			for _, ci := range c.WorstConversations {
				parts = append(parts, fmt.Sprintf("%s (lost %d, dup %d, order %d)", ci.ID, ci.Lost, ci.Duplicates, ci.OrderViolations))
			}
			fmt.Fprintf(w, "   worst conversations: %s\n", strings.Join(parts, ", "))
		}
		rows := []struct {
			name string
			p    Percentiles
		}{{"end-to-end", c.LatencyMS}, {"first chunk", c.TTFCMS}, {"model", c.ModelMS}, {"overhead", c.OverheadMS},
			{"limit", c.OrderedLimitMS}, {"over limit", c.OverLimitMS}}
		if c.OverheadVsDirectMS != nil {
			rows = append(rows, struct {
				name string
				p    Percentiles
			}{"e2e-direct", *c.OverheadVsDirectMS})
		}
		for _, row := range rows {
			if row.p.Count == 0 {
				continue
			}
			fmt.Fprintf(w, "   %-11s ms  p50 %8.1f  p90 %8.1f  p99 %8.1f  p99.9 %8.1f  max %8.1f\n", row.name, row.p.P50, row.p.P90, row.p.P99, row.p.P999, row.p.Max)
		}
	}
	if d := r.Direct; d != nil && d.LatencyMS.Count > 0 {
		fmt.Fprintf(w, "-- direct model calls (reference): %d, ms p50 %.1f p99 %.1f max %.1f; errors %v\n", d.Sent, d.LatencyMS.P50, d.LatencyMS.P99, d.LatencyMS.Max, d.Errors)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "-- errors by code: %s\n", formatCounts(r.Errors))
	}
	if len(r.Resent) > 0 {
		fmt.Fprintf(w, "-- resent after: %s\n", formatCounts(r.Resent))
	}
	if m := r.Malformed; m != nil {
		fmt.Fprintf(w, "-- malformed: %d sent, %d handled, %d not\n", m.Sent, m.Handled, m.Unhandled)
		for _, k := range slices.Sorted(maps.Keys(m.ByKind)) {
			fmt.Fprintf(w, "   %-15s %s\n", k, formatCounts(m.ByKind[k]))
		}
	}
	for _, e := range r.Events {
		fmt.Fprintf(w, "-- at %5.1fs: %s\n", e.T, e.What)
	}
	if rec := r.Recovery; rec != nil {
		fmt.Fprintf(w, "-- recovery (%s, p99 over %.0fs windows of requests sent after each restart, back within %.1f× the baseline p99 %.1f ms = %.1f ms):\n",
			rec.Class, rec.WindowS, RecoveryFactor, rec.BaselineP99MS, rec.BoundMS)
		for _, f := range rec.Faults {
			after := "not recovered"
			if f.RecoveredAfterS != nil {
				after = fmt.Sprintf("recovered after %.0f s", *f.RecoveredAfterS)
			}
			fmt.Fprintf(w, "   restart at %5.1fs: %s; window p99s ms %v; %d failed; %s\n", f.RestartS, after, f.Windows, f.Failed, f.Fault)
		}
	}
	if len(r.Processes) > 0 {
		fmt.Fprintf(w, "-- processes:\n")
		for _, name := range slices.Sorted(maps.Keys(r.Processes)) {
			p := r.Processes[name]
			fmt.Fprintf(w, "   %-14s cpu %6.1fs (%.2f cores, %.3f ms/request), max rss %6.1f MB", name, p.CPUSeconds, p.AvgCores, p.CPUPerRequestMS, p.MaxRSSMB)
			if p.Restarts > 0 {
				fmt.Fprintf(w, ", restarted %d×", p.Restarts)
			}
			fmt.Fprintln(w)
		}
	}
	for topic, pts := range r.Series.Lag {
		peak := 0.0
		for _, p := range pts {
			peak = max(peak, p.V)
		}
		fmt.Fprintf(w, "-- lag %s: peak %.0f records\n", topic, peak)
	}
	for _, c := range r.Checks {
		mark := "PASS"
		if !c.Pass {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "   [%s] %s: %s\n", mark, c.Name, c.Detail)
	}
	if len(r.Profiles) > 0 {
		fmt.Fprintf(w, "-- profiles (go tool pprof -top FILE): %s\n", strings.Join(r.Profiles, " "))
	}
}

func formatCounts(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
