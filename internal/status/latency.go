package status

import (
	"slices"
	"sync"
	"time"
)

// Window is the recent latency of a service's calls, by name (a backend):
// the calls of the last Span, at most windowSize of them per name. It is
// safe for concurrent use; the zero value is not usable, see NewWindow.
type Window struct {
	span time.Duration
	mu   sync.Mutex
	by   map[string]*ring
}

const windowSize = 512

type sample struct {
	at     time.Time
	d      time.Duration
	failed bool
}

type ring struct {
	s    [windowSize]sample
	next int
	n    int
}

// NewWindow returns a window of the calls of the last span.
func NewWindow(span time.Duration) *Window {
	return &Window{span: span, by: map[string]*ring{}}
}

// Observe records one call of name that took d.
func (w *Window) Observe(name string, at time.Time, d time.Duration, failed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.by[name]
	if r == nil {
		r = &ring{}
		w.by[name] = r
	}
	r.s[r.next] = sample{at: at, d: d, failed: failed}
	r.next = (r.next + 1) % windowSize
	r.n = min(r.n+1, windowSize)
}

// Stats returns name's calls and failures within the span before now, and
// their 50th and 99th percentile latencies in milliseconds.
func (w *Window) Stats(name string, now time.Time) (calls, failures int, p50, p99 float64) {
	w.mu.Lock()
	r := w.by[name]
	var ds []time.Duration
	if r != nil {
		for i := range r.n {
			s := r.s[i]
			if now.Sub(s.at) > w.span {
				continue
			}
			calls++
			if s.failed {
				failures++
			}
			ds = append(ds, s.d)
		}
	}
	w.mu.Unlock()
	if len(ds) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(ds)
	return calls, failures, quantile(ds, 0.5), quantile(ds, 0.99)
}

// quantile returns the q quantile of sorted ds in milliseconds (nearest
// rank).
func quantile(ds []time.Duration, q float64) float64 {
	i := int(q*float64(len(ds))+0.999999) - 1
	i = max(0, min(i, len(ds)-1))
	return float64(ds[i].Microseconds()) / 1000
}

// Tracker holds the requests in flight, for the record's Conversations.
// It is safe for concurrent use.
type Tracker struct {
	mu   sync.Mutex
	next uint64
	live map[uint64]Conversation
}

// Start records a request in flight; call the returned func when it ends.
func (t *Tracker) Start(c Conversation) (done func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.live == nil {
		t.live = map[uint64]Conversation{}
	}
	id := t.next
	t.next++
	t.live[id] = c
	return func() {
		t.mu.Lock()
		delete(t.live, id)
		t.mu.Unlock()
	}
}

// Snapshot returns how many requests are in flight and the n
// longest-running of them, longest first.
func (t *Tracker) Snapshot(n int) (int, []Conversation) {
	t.mu.Lock()
	all := make([]Conversation, 0, len(t.live))
	for _, c := range t.live {
		all = append(all, c)
	}
	t.mu.Unlock()
	slices.SortFunc(all, func(a, b Conversation) int { return a.Since.Compare(b.Since) })
	return len(all), all[:min(n, len(all))]
}
