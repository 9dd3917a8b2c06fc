package presence

import (
	"math"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// sumOf returns the requests shares of every live instance for tenant.
func sumOf(live map[string]map[string]Demand, tenant string) (sum float64, each map[string]float64) {
	each = map[string]float64{}
	for id := range live {
		sh := Compute(id, live).Of(tenant)
		each[id] = sh.Requests
		sum += sh.Requests
	}
	return sum, each
}

func TestCompute(t *testing.T) {
	floor2 := Floor / 2 // an idle instance's weight among 2, over the demand
	tests := []struct {
		name string
		live map[string]map[string]Demand
		want map[string]float64 // requests share of tenant "t" by instance
	}{
		{"alone", map[string]map[string]Demand{"a": {"t": {Requests: 7}}}, map[string]float64{"a": 1}},
		{"even", map[string]map[string]Demand{"a": {"t": {Requests: 50}}, "b": {"t": {Requests: 50}}},
			map[string]float64{"a": 0.5, "b": 0.5}},
		{"even of three", map[string]map[string]Demand{"a": {"t": {Requests: 5}}, "b": {"t": {Requests: 5}}, "c": {"t": {Requests: 5}}},
			map[string]float64{"a": 1.0 / 3, "b": 1.0 / 3, "c": 1.0 / 3}},
		{"skewed 90/10", map[string]map[string]Demand{"a": {"t": {Requests: 90}}, "b": {"t": {Requests: 10}}},
			map[string]float64{"a": 0.9, "b": 0.1}},
		{"one idle holds the floor", map[string]map[string]Demand{"a": {"t": {Requests: 100}}, "b": {}},
			map[string]float64{"a": 1 / (1 + floor2), "b": floor2 / (1 + floor2)}},
		{"nobody asks: even", map[string]map[string]Demand{"a": {"t": {}}, "b": {"u": {Requests: 3}}},
			map[string]float64{"a": 0.5, "b": 0.5}},
		{"no record names the tenant: even", map[string]map[string]Demand{"a": {}, "b": {}, "c": {}, "d": {}},
			map[string]float64{"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sum, each := sumOf(tt.live, "t")
			for id, want := range tt.want {
				if !near(each[id], want) {
					t.Errorf("share of %s = %v, want %v", id, each[id], want)
				}
			}
			if !near(sum, 1) {
				t.Errorf("shares add up to %v, want 1", sum)
			}
			if got := Compute("a", tt.live).Instances; got != len(tt.live) {
				t.Errorf("Instances = %d, want %d", got, len(tt.live))
			}
		})
	}
}

// TestComputeBuckets: the request and token buckets are shared by their
// own demand each.
func TestComputeBuckets(t *testing.T) {
	live := map[string]map[string]Demand{"a": {"t": {Requests: 10, Tokens: 100}}, "b": {"t": {Requests: 10, Tokens: 900}}}
	sh := Compute("a", live).Of("t")
	if !near(sh.Requests, 0.5) || !near(sh.Tokens, 0.1) {
		t.Errorf("a's share = %+v, want requests 0.5, tokens 0.1", sh)
	}
}

// TestComputeSelfMissing: an instance not in its own view (it has not
// published yet) is counted, at the floor.
func TestComputeSelfMissing(t *testing.T) {
	live := map[string]map[string]Demand{"a": {"t": {Requests: 10}}}
	s := Compute("new", live)
	if s.Instances != 2 {
		t.Errorf("Instances = %d, want 2", s.Instances)
	}
	if got, want := s.Of("t").Requests, (Floor*10/2)/(10+Floor*10/2); !near(got, want) {
		t.Errorf("share = %v, want %v", got, want)
	}
}

// member returns a Member with a settable clock, for the view tests
// (no Kafka: records are applied by hand).
func member(t *testing.T, id string, now *time.Time) *Member {
	t.Helper()
	m, err := New(Config{Topic: "p", Instance: id, Demand: func() map[string]Demand { return nil }, Apply: func(Shares) {},
		Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestViewJoinLeaveStale follows one instance's view as others join,
// crash (their records go stale after three of their intervals), and
// leave with a tombstone.
func TestViewJoinLeaveStale(t *testing.T) {
	start := time.Unix(1000, 0)
	now := start
	m := member(t, "a", &now)
	own := func(d float64) {
		m.publishLocal(map[string]Demand{"t": {Requests: d}})
		m.apply(Record{Instance: "a", Run: m.run, IntervalMillis: 1000}, now)
	}
	peer := func(id string, d float64, interval time.Duration) {
		m.apply(Record{Instance: id, Run: "x", IntervalMillis: interval.Milliseconds(), Tenants: map[string]Demand{"t": {Requests: d}}}, now)
	}
	check := func(step string, wantN int, want float64, wantOK bool) {
		t.Helper()
		s, ok := m.view(now, start)
		if s.Instances != wantN || !near(s.Of("t").Requests, want) || ok != wantOK {
			t.Errorf("%s: %d instances, share %v, ok %v; want %d, %v, %v", step, s.Instances, s.Of("t").Requests, ok, wantN, want, wantOK)
		}
	}
	own(30)
	check("alone", 1, 1, true)

	peer("b", 30, time.Second)
	check("b joined", 2, 0.5, true)
	peer("c", 60, 2*time.Second)
	check("c joined", 3, 0.25, true)

	// b stops publishing (a crash); c keeps going.
	for range 3 {
		now = now.Add(time.Second)
		own(30)
		peer("c", 60, 2*time.Second)
	}
	check("b 3 intervals old: still live", 3, 0.25, true)
	now = now.Add(time.Second)
	own(30)
	peer("c", 60, 2*time.Second)
	check("b stale", 2, 1.0/3, true)

	// c's record is kept three of its own (2 s) intervals.
	now = now.Add(5 * time.Second)
	own(30)
	check("c within 3 of its intervals", 2, 1.0/3, true)

	m.forget("c") // a tombstone
	check("c left", 1, 1, true)

	// A record of b's read late (at start, as history) counts from its
	// own timestamp, not from when it was read.
	old := member(t, "z", &now)
	old.apply(Record{Instance: "b", Run: "x", IntervalMillis: 1000}, now.Add(-10*time.Second))
	if s, _ := old.view(now, now); s.Instances != 1 {
		t.Errorf("a 10 s old record read at start made %d instances, want 1", s.Instances)
	}
}

// TestViewDegraded: an instance that stops reading its own records back
// reports it (the Run loop then holds limit/N of the last N).
func TestViewDegraded(t *testing.T) {
	start := time.Unix(1000, 0)
	now := start
	m := member(t, "a", &now)
	m.publishLocal(nil)
	if _, ok := m.view(now, start); !ok {
		t.Error("not ok within the first intervals (grace)")
	}
	now = now.Add(4 * time.Second)
	m.publishLocal(nil)
	if _, ok := m.view(now, start); ok {
		t.Error("ok without ever reading its own record back")
	}
	m.apply(Record{Instance: "a", Run: m.run, IntervalMillis: 1000}, now)
	if _, ok := m.view(now, start); !ok {
		t.Error("not ok right after reading its own record")
	}
	m.apply(Record{Instance: "a", Run: "another process", IntervalMillis: 1000}, now)
	now = now.Add(4 * time.Second)
	if _, ok := m.view(now, start); ok {
		t.Error("a record of another run under the same ID counted as this run's")
	}
	if !m.twin {
		t.Error("another process under the same ID, read after this run's first record, was not reported")
	}
}

// TestDemandSmoothing: counts become rates, smoothed; quiet tenants go.
func TestDemandSmoothing(t *testing.T) {
	var counts map[string]Demand
	m, err := New(Config{Topic: "p", Instance: "a", Demand: func() map[string]Demand { return counts }, Apply: func(Shares) {}})
	if err != nil {
		t.Fatal(err)
	}
	counts = map[string]Demand{"t": {Requests: 20, Tokens: 2000}}
	if d := m.demand(2 * time.Second)["t"]; !near(d.Requests, 10) || !near(d.Tokens, 1000) {
		t.Errorf("first interval: %+v, want 10 and 1000 per second", d)
	}
	counts = map[string]Demand{"t": {Requests: 30}}
	if d := m.demand(time.Second)["t"]; !near(d.Requests, 20) {
		t.Errorf("second interval: %v, want the mean of 10 and 30", d.Requests)
	}
	counts = nil
	for range 20 {
		m.demand(time.Second)
	}
	if d, ok := m.demand(time.Second)["t"]; ok {
		t.Errorf("a quiet tenant is still published: %+v", d)
	}
	counts = map[string]Demand{}
	for i := range MaxTenants + 10 {
		counts[string(rune('A'+i%26))+string(rune('a'+i/26%26))+string(rune('0'+i/676))] = Demand{Requests: float64(i + 1)}
	}
	got := m.demand(time.Second)
	if len(got) != MaxTenants {
		t.Fatalf("published %d tenants, want %d", len(got), MaxTenants)
	}
	for _, d := range got {
		if d.Requests <= 10 {
			t.Errorf("a tenant of the 10 quietest was published (%v/s)", d.Requests)
		}
	}
}
