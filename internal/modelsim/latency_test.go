package modelsim

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestLatencyAt(t *testing.T) {
	m := latencyModel{base: 100 * time.Millisecond, jitter: 10 * time.Millisecond, longTail: time.Second, longTailFraction: 0.25}
	tests := []struct {
		name         string
		model        latencyModel
		tail, spread float64
		want         time.Duration
	}{
		{name: "base centre", model: m, tail: 0.5, spread: 0.5, want: 100 * time.Millisecond},
		{name: "base low edge", model: m, tail: 0.5, spread: 0, want: 90 * time.Millisecond},
		{name: "base high side", model: m, tail: 0.99, spread: 0.75, want: 105 * time.Millisecond},
		{name: "long tail", model: m, tail: 0.1, spread: 0.5, want: time.Second},
		{name: "long tail jitter", model: m, tail: 0.2499, spread: 0, want: 990 * time.Millisecond},
		{name: "at fraction is base", model: m, tail: 0.25, spread: 0.5, want: 100 * time.Millisecond},
		{name: "never negative", model: latencyModel{base: time.Millisecond, jitter: time.Second}, tail: 0.5, spread: 0, want: 0},
		{name: "zero", model: latencyModel{}, tail: 0, spread: 0.3, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.model.at(tt.tail, tt.spread); got != tt.want {
				t.Errorf("at(%v, %v) = %v, want %v", tt.tail, tt.spread, got, tt.want)
			}
		})
	}
}

func TestLongTailFraction(t *testing.T) {
	const draws = 2000
	for _, fraction := range []float64{0, 0.01, 0.1, 0.5, 1} {
		m := latencyModel{base: 10 * time.Millisecond, jitter: time.Millisecond, longTail: time.Second, longTailFraction: fraction}
		rng := rand.New(rand.NewPCG(1, 2))
		long := 0
		for range draws {
			d := m.at(rng.Float64(), rng.Float64())
			if d < 9*time.Millisecond || (d > 11*time.Millisecond && d < 999*time.Millisecond) || d > 1001*time.Millisecond {
				t.Fatalf("fraction %v: latency %v outside base±jitter and long tail±jitter", fraction, d)
			}
			if d > 500*time.Millisecond {
				long++
			}
		}
		// A binomial standard deviation at p=0.5 is about 0.011; allow ~3.
		if got := float64(long) / draws; got < fraction-0.035 || got > fraction+0.035 {
			t.Errorf("long-tail share = %v over %d draws, want %v ± 0.035", got, draws, fraction)
		}
	}
}

func TestLatencySource(t *testing.T) {
	m := latencyModel{base: 10 * time.Millisecond, jitter: 5 * time.Millisecond, longTail: time.Second, longTailFraction: 0.3}
	seq := func(seed uint64) []time.Duration {
		s := newLatencySource(m, seed)
		out := make([]time.Duration, 50)
		for i := range out {
			out[i] = s.next()
		}
		return out
	}
	a, b, c := seq(7), seq(7), seq(8)
	same := func(x, y []time.Duration) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Errorf("seed 7 twice gave different sequences:\n%v\n%v", a, b)
	}
	if same(a, c) {
		t.Errorf("seeds 7 and 8 gave the same sequence %v", a)
	}

	// Concurrent draws are race-free (run with -race).
	s := newLatencySource(m, 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				s.next()
			}
		})
	}
	wg.Wait()
}
