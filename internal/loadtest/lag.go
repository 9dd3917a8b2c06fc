package loadtest

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// lagWatch samples a consumer group's lag per topic with kadm: the
// records on the requests topics the group has not committed yet.
type lagWatch struct {
	adm   *kadm.Client
	cl    *kgo.Client
	group string
	begin time.Time

	mu     sync.Mutex
	series map[string][]Point
}

func newLagWatch(opts []kgo.Opt, group string, begin time.Time) (*lagWatch, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	return &lagWatch{adm: kadm.NewClient(cl), cl: cl, group: group, begin: begin, series: map[string][]Point{}}, nil
}

func (w *lagWatch) sample(ctx context.Context, now time.Time) {
	ctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
	defer cancel()
	lags, err := w.adm.Lag(ctx, w.group)
	if err != nil {
		return
	}
	l, ok := lags[w.group]
	if !ok || l.Error() != nil {
		return
	}
	t := now.Sub(w.begin).Seconds()
	w.mu.Lock()
	defer w.mu.Unlock()
	for topic, tl := range l.Lag.TotalByTopic() {
		w.series[topic] = append(w.series[topic], Point{t, float64(tl.Lag)})
	}
}

func (w *lagWatch) out() map[string][]Point {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.series
}

func (w *lagWatch) close() { w.cl.Close() }
