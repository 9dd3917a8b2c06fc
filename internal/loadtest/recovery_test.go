package loadtest

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// TestRecovery computes the recovery on a hand-built run: 100 requests a
// second, a baseline p99 of 100 ms (bound 150 ms; the requests still in
// flight when the first fault began left out), and two faults.
func TestRecovery(t *testing.T) {
	const ms = time.Millisecond
	var ss []sample
	// second adds second s's 100 requests: slow of them take lat, the
	// rest 50 ms (fail: the slow ones did not succeed).
	second := func(s int, slow int, lat time.Duration, fail bool) {
		for i := range 100 {
			x := sample{t: time.Duration(s)*time.Second + time.Duration(i)*10*ms, lat: 50 * ms, ok: true}
			if i < slow {
				x.lat, x.ok = lat, !fail
			}
			ss = append(ss, x)
		}
	}
	second(0, 100, 5*time.Second, false) // warm-up: not in the baseline
	for s := 1; s < 5; s++ {
		second(s, 1, 100*ms, false) // p99 (the 99th of 100) is 50 ms; the 100th 100 ms
		if s == 4 {
			ss[len(ss)-1].lat = 100 * ms // two slow requests in this second: p99 over the baseline is 100 ms
		}
	}
	// In flight when fault 1 began: the fault's, not the baseline's.
	for range 5 {
		ss = append(ss, sample{t: 4950 * ms, lat: 3 * time.Second, ok: true})
	}
	// Fault 1 at 5 s, restarted at 6 s: 6–7 s slow (p99 400 ms), 7–8 s
	// fine, 8–9 s failing, then fine from 9 s to the next fault at 13 s:
	// recovered 3 s after the restart (one good second alone does not count).
	second(5, 100, time.Second, false)
	second(6, 50, 400*ms, false)
	second(7, 0, 0, false)
	second(8, 2, 0, true)
	for s := 9; s < 13; s++ {
		second(s, 2, 140*ms, false)
	}
	// Fault 2 at 13 s, restarted at 14 s, never back before the load ends
	// at 17 s.
	for s := 13; s < 17; s++ {
		second(s, 5, 400*ms, false)
	}
	rep := recovery(ss, time.Second, []time.Duration{13 * time.Second, 5 * time.Second},
		[]restart{{name: "kill a", at: 5 * time.Second, end: 6 * time.Second}, {name: "kill b", at: 13 * time.Second, end: 14 * time.Second}},
		17*time.Second)
	if rep == nil || len(rep.Faults) != 2 {
		t.Fatalf("report %+v: want two faults", rep)
	}
	if rep.BaselineP99MS != 100 || rep.BoundMS != 150 {
		t.Errorf("baseline p99 %v bound %v: want 100 and 150", rep.BaselineP99MS, rep.BoundMS)
	}
	f := rep.Faults[0]
	if f.RecoveredAfterS == nil || *f.RecoveredAfterS != 3 {
		t.Errorf("fault 1 recovered after %v: want 3 s", ptr(f.RecoveredAfterS))
	}
	if got := fmt.Sprint(f.Windows); got != "[400 50 -1 140 140 140 140]" || f.Failed != 2 {
		t.Errorf("fault 1 windows %s failed %d: want [400 50 -1 140 140 140 140] and 2", got, f.Failed)
	}
	if g := rep.Faults[1]; g.RecoveredAfterS != nil || len(g.Windows) != 3 {
		t.Errorf("fault 2 recovered after %v with windows %v: want never, 3 windows", ptr(g.RecoveredAfterS), g.Windows)
	}
	if rep.met() {
		t.Error("target met with a fault that never recovered")
	}
	if ch := recoveryCheck(rep); !ch.Pass || ch.Detail == "" {
		t.Errorf("check %+v: informational, passes with a detail", ch)
	}
	if recovery(ss, time.Second, nil, nil, 17*time.Second) != nil {
		t.Error("a run without faults has a recovery")
	}
}

func TestP99NearestRank(t *testing.T) {
	mk := func(n int, failed int) []sample {
		var ss []sample
		for i := range n {
			ss = append(ss, sample{lat: time.Duration(i+1) * time.Millisecond, ok: i < n-failed})
		}
		return ss
	}
	for _, tc := range []struct {
		n, failed int
		want      float64
	}{{1, 0, 1}, {100, 0, 99}, {200, 0, 198}, {100, 1, 99}, {100, 2, math.Inf(1)}, {10, 1, math.Inf(1)}} {
		if got, ok := p99(mk(tc.n, tc.failed)); !ok || got != tc.want {
			t.Errorf("p99 of %d with %d failed: %v, want %v", tc.n, tc.failed, got, tc.want)
		}
	}
	if _, ok := p99(nil); ok {
		t.Error("p99 of nothing")
	}
}

func ptr(f *float64) any {
	if f == nil {
		return "never"
	}
	return *f
}
