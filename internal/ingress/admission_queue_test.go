package ingress

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestAdmissionQueueMark: with the group committing 1,000 interactive
// records a second, a 2 s queue mark sheds both lanes once the
// interactive lag would take more than 2 s to drain, whatever the record
// marks (far above here), keeps shedding down to 1 s, tells clients to
// come back when that is reached, and admits below it. Off (0), the same
// lags shed nothing.
func TestAdmissionQueueMark(t *testing.T) {
	steps := []struct {
		lag  int64
		want bool // both lanes shedding
	}{
		{500, false},  // 0.5 s
		{1900, false}, // 1.9 s
		{2500, true},  // 2.5 s > 2 s
		{1500, true},  // 1.5 s: above half the mark
		{900, false},  // 0.9 s
	}
	for _, mark := range []time.Duration{2 * time.Second, 0} {
		cfg := AdmissionConfig{InteractiveHigh: 50000, BatchHigh: 20000, InteractiveQueueHigh: mark}
		cfg.setDefaults()
		if err := cfg.validate(); err != nil {
			t.Fatal(err)
		}
		a := newAdmission(cfg, map[string]string{"interactive": "switchboard.requests.interactive", "batch": "switchboard.requests.batch"},
			slog.New(slog.DiscardHandler), newMetrics(prometheus.NewRegistry(), func() float64 { return 0 }))
		now, commit := time.Unix(0, 0), int64(0)
		tick := func(lag int64) {
			now, commit = now.Add(time.Second), commit+1000
			a.observe(now, lagOf(lag, commit, 0, 0))
		}
		for range 20 { // the drain rate's average settles at 1,000/s
			tick(500)
		}
		for i, s := range steps {
			tick(s.lag)
			want := s.want && mark > 0
			if got := [2]bool{a.check("interactive") != nil, a.check("batch") != nil}; got != [2]bool{want, want} {
				t.Fatalf("mark %v, step %d (lag %d, %.1f s): interactive, batch shedding %v, want both %v", mark, i, s.lag, float64(s.lag)/a.drain["interactive"], got, want)
			}
			if s.lag == 2500 && want {
				// 1,500 records above the 1 s level, at 1,000/s.
				if f := a.check("interactive"); f.retryAfter < 1400*time.Millisecond || f.retryAfter > 1600*time.Millisecond {
					t.Errorf("Retry-After %v, want about 1.5s", f.retryAfter)
				}
			}
		}
	}
	neg := AdmissionConfig{InteractiveQueueHigh: -time.Second}
	neg.setDefaults()
	if err := neg.validate(); err == nil {
		t.Error("a negative queue mark validated")
	}
}

// TestAdmissionQueueMarkAtStart: the first measured drain rate starts the
// average, so a fresh ingress does not overstate the wait and shed a
// healthy group (900 records at 1,000/s: 0.9 s, under a 1.5 s mark).
func TestAdmissionQueueMarkAtStart(t *testing.T) {
	cfg := AdmissionConfig{InteractiveQueueHigh: 1500 * time.Millisecond}
	cfg.setDefaults()
	a := newAdmission(cfg, map[string]string{"interactive": "switchboard.requests.interactive", "batch": "switchboard.requests.batch"},
		slog.New(slog.DiscardHandler), newMetrics(prometheus.NewRegistry(), func() float64 { return 0 }))
	now := time.Unix(0, 0)
	for i := range int64(5) {
		now = now.Add(time.Second)
		a.observe(now, lagOf(900, 1000*i, 0, 0))
		if f := a.check("interactive"); f != nil {
			t.Fatalf("reading %d: shedding a group 0.9 s behind (drain rate %.0f/s): %s", i+1, a.drain["interactive"], f.message)
		}
	}
	if got := a.drain["interactive"]; got != 1000 {
		t.Errorf("drain rate %v, want 1000", got)
	}
}
