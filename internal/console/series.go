package console

import (
	"slices"
	"time"
)

// series holds the last n seconds of terminal results: their count,
// failures and latencies (at most maxSamples a second, the first ones).
type series struct {
	n       int
	buckets map[int64]*bucket // by Unix second
	newest  int64
}

const maxSamples = 4096

type bucket struct {
	count, failed int
	latencies     []time.Duration
}

// Point is one second of the chart.
type Point struct {
	T      int64   `json:"t"` // Unix second
	Rate   int     `json:"rps"`
	Failed int     `json:"failed"`
	P99MS  float64 `json:"p99_ms"`
}

func newSeries(n int) *series { return &series{n: n, buckets: map[int64]*bucket{}} }

// add counts one result at t. Results older than the window are dropped.
func (s *series) add(t time.Time, latency time.Duration, failed bool) {
	sec := t.Unix()
	if sec <= s.newest-int64(s.n) {
		return
	}
	b := s.buckets[sec]
	if b == nil {
		b = &bucket{}
		s.buckets[sec] = b
	}
	b.count++
	if failed {
		b.failed++
	}
	if latency > 0 && len(b.latencies) < maxSamples {
		b.latencies = append(b.latencies, latency)
	}
	if sec > s.newest {
		s.newest = sec
		for k := range s.buckets {
			if k <= sec-int64(s.n) {
				delete(s.buckets, k)
			}
		}
	}
}

// points returns the seconds (now-n, now], one point each, oldest first.
func (s *series) points(now time.Time) []Point {
	end := now.Unix()
	out := make([]Point, 0, s.n)
	for sec := end - int64(s.n) + 1; sec <= end; sec++ {
		p := Point{T: sec}
		if b := s.buckets[sec]; b != nil {
			p.Rate, p.Failed = b.count, b.failed
			if len(b.latencies) > 0 {
				ls := slices.Clone(b.latencies)
				slices.Sort(ls)
				i := min(len(ls)-1, max(0, int(0.99*float64(len(ls))+0.999999)-1))
				p.P99MS = float64(ls[i].Microseconds()) / 1000
			}
		}
		out = append(out, p)
	}
	return out
}
