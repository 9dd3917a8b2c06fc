package loadtest

import (
	"errors"
	"testing"
	"time"
)

func TestOrderedLimit(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tests := []struct {
		name  string
		steps []limitStep
		want  []int // earliest_done in ms after t0; -1 for unknown
	}{
		{"one request", []limitStep{{send: at(0), model: 200 * time.Millisecond}}, []int{200}},
		{"overlapping: each waits for the one before", []limitStep{
			{send: at(0), model: 200 * time.Millisecond},
			{send: at(100), model: 300 * time.Millisecond}, // max(100, 200) + 300
			{send: at(150), model: 100 * time.Millisecond}, // max(150, 500) + 100
		}, []int{200, 500, 600}},
		{"a gap: the later one starts at its send", []limitStep{
			{send: at(50), model: 100 * time.Millisecond},
			{send: at(1000), model: 100 * time.Millisecond},
		}, []int{150, 1100}},
		{"skipped requests cost nothing; an error result costs no model time", []limitStep{
			{send: at(0), skip: true},
			{send: at(10)}, // error result: max(10, -) + 0
			{send: at(20), model: 200 * time.Millisecond},
		}, []int{-1, 10, 220}},
		{"a final without model time ends what is known", []limitStep{
			{send: at(0), model: 100 * time.Millisecond},
			{send: at(10), unknown: true},
			{send: at(20), model: 100 * time.Millisecond},
		}, []int{100, -1, -1}},
	}
	for _, tc := range tests {
		got := orderedLimit(tc.steps)
		for i, w := range tc.want {
			switch {
			case w < 0 && !got[i].IsZero():
				t.Errorf("%s: step %d: got %v, want unknown", tc.name, i, got[i].Sub(t0))
			case w >= 0 && !got[i].Equal(at(w)):
				t.Errorf("%s: step %d: got %v, want %d ms", tc.name, i, got[i].Sub(t0), w)
			}
		}
	}
}

// TestLedgerOrderedLimit runs a hand-computed case through the ledger:
// four conversations with overlapping requests, a failed send, an error
// result and a final without timings.
func TestLedgerOrderedLimit(t *testing.T) {
	begin := time.Now().Add(-time.Minute)
	at := func(ms int) time.Time { return begin.Add(time.Duration(ms) * time.Millisecond) }
	model := func(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
	l := newLedger(begin, 0)
	type req struct {
		conv, id string
		send     int
		sendErr  error
	}
	for _, r := range []req{
		{"a", "a1", 0, nil}, {"a", "a2", 100, nil}, {"a", "a3", 150, nil},
		{"b", "b1", 50, nil}, {"b", "b2", 1000, nil},
		{"c", "c1", 0, errors.New("refused")}, {"c", "c2", 10, nil}, {"c", "c3", 20, nil},
		{"d", "d1", 0, nil}, {"d", "d2", 10, nil},
	} {
		e := l.register("interactive", r.conv, r.id, at(r.send))
		l.sent(e, r.sendErr, at(r.send))
	}
	for _, a := range []Answer{
		// a: limits 200, max(100,200)+300 = 500, max(150,500)+100 = 600.
		{ID: "a1", Kind: Final, At: at(250), ModelTime: model(200)}, // over 50, limit 200
		{ID: "a2", Kind: Final, At: at(620), ModelTime: model(300)}, // over 120, limit 400
		{ID: "a3", Kind: Final, At: at(700), ModelTime: model(100)}, // over 100, limit 450
		// b: limits 150, 1100.
		{ID: "b1", Kind: Final, At: at(400), ModelTime: model(100)},  // over 250, limit 100
		{ID: "b2", Kind: Final, At: at(1130), ModelTime: model(100)}, // over 30, limit 100
		// c: c1 never sent; c2 an error at 10 + 0; c3 max(20,10)+200 = 220.
		{ID: "c2", Kind: Failed, ErrorCode: "backend_unavailable", At: at(60)},
		{ID: "c3", Kind: Final, At: at(300), ModelTime: model(200)}, // over 80, limit 200
		// d: no timings, so nothing of d is counted.
		{ID: "d1", Kind: Final, At: at(300)},
		{ID: "d2", Kind: Final, At: at(600), ModelTime: model(100)},
	} {
		l.observe(a)
	}
	classes, _, _, _ := l.finish()
	c := classes["interactive"]
	near := func(got, want float64) bool { return got > want*0.999-0.001 && got < want*1.001+0.001 }
	// Over the limit: 30, 50, 80, 100, 120, 250; the limit: 100, 100, 200,
	// 200, 400, 450.
	for _, tc := range []struct {
		name      string
		got       Percentiles
		count     int64
		p50, p90  float64
		max, mean float64
	}{
		{"over limit", c.OverLimitMS, 6, 80, 120, 250, 105},
		{"ordered limit", c.OrderedLimitMS, 6, 200, 400, 450, 241.67},
	} {
		if tc.got.Count != tc.count || !near(tc.got.P50, tc.p50) || !near(tc.got.P90, tc.p90) || !near(tc.got.Max, tc.max) || !near(tc.got.Mean, tc.mean) {
			t.Errorf("%s: got count %d p50 %v p90 %v max %v mean %v, want %d, %v, %v, %v, %v", tc.name,
				tc.got.Count, tc.got.P50, tc.got.P90, tc.got.Max, tc.got.Mean, tc.count, tc.p50, tc.p90, tc.max, tc.mean)
		}
	}
	// The per-request overhead (e2e − model) includes the wait for the
	// conversation's earlier requests: 50, 220, 450, 300, 30, 80 (and d2's
	// 490), so its maximum is above the overhead over the limit.
	if c.OverheadMS.Max < c.OverLimitMS.Max || !near(c.OverheadMS.Max, 490) {
		t.Errorf("overhead max %v, want 490 (over-limit max %v)", c.OverheadMS.Max, c.OverLimitMS.Max)
	}
}
