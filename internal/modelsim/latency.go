package modelsim

import (
	"math/rand/v2"
	"sync"
	"time"
)

// latencyModel turns uniform random draws into request latencies; see the
// package documentation for the model.
type latencyModel struct {
	base             time.Duration
	jitter           time.Duration
	longTail         time.Duration
	longTailFraction float64
}

// at returns the latency for one request from two uniform draws in [0, 1):
// tail decides whether the request is in the long tail, spread places it in
// the jitter band. It is a pure function so the distribution can be tested
// without waiting.
func (m latencyModel) at(tail, spread float64) time.Duration {
	d := m.base
	if tail < m.longTailFraction {
		d = m.longTail
	}
	d += time.Duration((2*spread - 1) * float64(m.jitter))
	return max(d, 0)
}

// latencySource draws latencies from a seeded PRNG. It is safe for
// concurrent use: mu guards rng, which math/rand/v2 does not make safe.
type latencySource struct {
	model latencyModel

	mu  sync.Mutex
	rng *rand.Rand
}

// newLatencySource returns a source for model seeded with seed.
func newLatencySource(model latencyModel, seed uint64) *latencySource {
	return &latencySource{
		model: model,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
	}
}

// next draws the latency of the next request.
func (s *latencySource) next() time.Duration {
	s.mu.Lock()
	tail, spread := s.rng.Float64(), s.rng.Float64()
	s.mu.Unlock()
	return s.model.at(tail, spread)
}

// uniform draws two numbers in [0, 1) for fault decisions.
func (s *latencySource) uniform() (float64, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64(), s.rng.Float64()
}
