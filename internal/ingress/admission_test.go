package ingress

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
)

// lagOf builds a one-partition-per-lane group lag.
func lagOf(interLag, interCommit, batchLag, batchCommit int64) kadm.GroupLag {
	p := func(topic string, lag, commit int64) map[int32]kadm.GroupMemberLag {
		return map[int32]kadm.GroupMemberLag{0: {Topic: topic, Lag: lag, Commit: kadm.Offset{At: commit}, End: kadm.ListedOffset{Offset: commit + lag}}}
	}
	return kadm.GroupLag{
		"switchboard.requests.interactive": p("switchboard.requests.interactive", interLag, interCommit),
		"switchboard.requests.batch":       p("switchboard.requests.batch", batchLag, batchCommit),
		"unrelated":                        p("unrelated", 1e9, 0),
	}
}

// TestAdmissionHysteresis walks the lag up (workers stopped: nothing
// drains) and down again: batch sheds first, interactive only when its own
// lag is high, each lane recovers below its low mark, and every change is
// counted.
func TestAdmissionHysteresis(t *testing.T) {
	cfg := AdmissionConfig{BatchHigh: 100, BatchLow: 50, InteractiveHigh: 200, InteractiveLow: 100, MaxRetryAfter: 30 * time.Second}
	cfg.setDefaults()
	m := newMetrics(prometheus.NewRegistry(), func() float64 { return 0 })
	a := newAdmission(cfg, map[string]string{"interactive": "switchboard.requests.interactive", "batch": "switchboard.requests.batch"},
		slog.New(slog.DiscardHandler), m)
	now := time.Unix(0, 0)
	type state struct{ batch, interactive bool }
	steps := []struct {
		inter, batch int64 // lag
		want         state // shedding
	}{
		{10, 10, state{false, false}},
		{60, 41, state{true, false}},  // total 101 > 100: batch sheds
		{150, 0, state{true, false}},  // total 150 > 50: batch still shedding (hysteresis)
		{201, 0, state{true, true}},   // interactive over its own high mark
		{150, 0, state{true, true}},   // between interactive's marks: unchanged
		{99, 0, state{true, false}},   // interactive recovers; total 99 > 50: batch still shed
		{20, 29, state{false, false}}, // total 49 < 50: batch recovers
		{0, 90, state{false, false}},  // batch-only backlog under the batch high mark
		{0, 500, state{true, false}},  // a batch flood sheds batch, never interactive
	}
	commit := int64(0)
	for i, s := range steps {
		now = now.Add(time.Second)
		a.observe(now, lagOf(s.inter, commit, s.batch, commit))
		got := state{a.check("batch") != nil, a.check("interactive") != nil}
		if got != s.want {
			t.Fatalf("step %d (lag %d/%d): shedding %+v, want %+v", i, s.inter, s.batch, got, s.want)
		}
	}
	if n := testutil.ToFloat64(m.admissionChanges.WithLabelValues("batch", "shedding")); n != 2 {
		t.Errorf("batch entered shedding %v times, want 2", n)
	}
	if n := testutil.ToFloat64(m.admissionChanges.WithLabelValues("interactive", "admitting")); n != 1 {
		t.Errorf("interactive recovered %v times, want 1", n)
	}
	if v := testutil.ToFloat64(m.admissionShedding.WithLabelValues("batch")); v != 1 {
		t.Errorf("batch shedding gauge = %v, want 1", v)
	}
	// Nothing drained: Retry-After is the cap; batch gets 429.
	f := a.check("batch")
	if f.status != http.StatusTooManyRequests || f.retryAfter != 30*time.Second || f.code != "lag_shedding" {
		t.Errorf("batch rejection = %+v, want 429 lag_shedding after 30s", f)
	}
}

// TestAdmissionRetryAfterFromDrainRate: with the group committing 100
// records/s and 450 records above the low mark, Retry-After is about 4.5s.
func TestAdmissionRetryAfterFromDrainRate(t *testing.T) {
	cfg := AdmissionConfig{BatchHigh: 100, BatchLow: 50, InteractiveHigh: 200, InteractiveLow: 100}
	cfg.setDefaults()
	a := newAdmission(cfg, map[string]string{"interactive": "switchboard.requests.interactive", "batch": "switchboard.requests.batch"},
		slog.New(slog.DiscardHandler), newMetrics(prometheus.NewRegistry(), func() float64 { return 0 }))
	now := time.Unix(0, 0)
	var commit int64
	for range 20 { // the EWMA settles on the steady rate
		now = now.Add(time.Second)
		commit += 100
		a.observe(now, lagOf(0, 0, 500, commit))
	}
	f := a.check("batch")
	if f == nil {
		t.Fatal("batch admitted at lag 500 over a high mark of 100")
	}
	if f.retryAfter < 4*time.Second || f.retryAfter > 5*time.Second {
		t.Errorf("Retry-After = %v, want about 4.5s (450 records at 100/s)", f.retryAfter)
	}
	if f.status != http.StatusTooManyRequests {
		t.Errorf("status %d, want 429", f.status)
	}
	a.observe(now.Add(time.Second), lagOf(300, 0, 0, commit))
	if f := a.check("interactive"); f == nil || f.status != http.StatusServiceUnavailable || f.retryAfter != cfg.MaxRetryAfter {
		t.Errorf("interactive rejection = %+v, want 503 with the cap (its lane does not drain)", f)
	}
}

// The low marks follow their high marks unless set: a high mark alone
// never makes the configuration invalid (issue 14: the flags' fixed low
// defaults made --batch-lag-high 8000 refuse to start and left
// --batch-lag-high 40000 with a low mark of 10000).
func TestAdmissionLowMarksFollowHigh(t *testing.T) {
	tests := []struct {
		name                  string
		batchHigh, batchLow   int64
		interHigh, interLow   int64
		wantBatchLow, wantInt int64
		wantErr               string
	}{
		{name: "defaults", wantBatchLow: 10000, wantInt: 25000},
		{name: "lower batch high", batchHigh: 8000, wantBatchLow: 4000, wantInt: 25000},
		{name: "higher batch high", batchHigh: 40000, wantBatchLow: 20000, wantInt: 25000},
		{name: "interactive high", interHigh: 1000, wantBatchLow: 10000, wantInt: 500},
		{name: "explicit low", batchHigh: 8000, batchLow: 1000, wantBatchLow: 1000, wantInt: 25000},
		{name: "low above high", batchHigh: 8000, batchLow: 9000, wantErr: "batch lag marks"},
		{name: "interactive low equal", interHigh: 100, interLow: 100, wantErr: "interactive lag marks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Defaults().Admission
			if tt.batchHigh != 0 {
				c.BatchHigh = tt.batchHigh
			}
			if tt.interHigh != 0 {
				c.InteractiveHigh = tt.interHigh
			}
			c.BatchLow, c.InteractiveLow = tt.batchLow, tt.interLow
			c.setDefaults()
			err := c.validate()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("validate: got %v, want an error about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("validate: %v", err)
			}
			if c.BatchLow != tt.wantBatchLow || c.InteractiveLow != tt.wantInt {
				t.Errorf("low marks: got batch %d, interactive %d; want %d, %d", c.BatchLow, c.InteractiveLow, tt.wantBatchLow, tt.wantInt)
			}
		})
	}
}
