package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// AdmissionConfig sets lag-driven admission: ingress reads the
// router-worker group's lag every Interval and sheds work while the
// workers are behind. Batch work is shed first: the batch lane is judged
// by the group's total lag (both lanes) against the batch marks, the
// interactive lane by its own lag against higher marks, so interactive
// work is shed only when it is itself behind. A lane starts shedding above
// its high mark and admits again below its low mark (hysteresis).
type AdmissionConfig struct {
	// Disabled turns admission off: every lane is always admitted.
	Disabled bool
	// Group is the router-worker consumer group. Default "switchboard-router".
	Group string
	// Interval between lag reads. Default 1s.
	Interval time.Duration
	// BatchHigh and BatchLow are the total lag (records) at which the batch
	// lane starts and stops shedding. Defaults 20000 and 10000.
	BatchHigh, BatchLow int64
	// InteractiveHigh and InteractiveLow are the interactive lane's lag
	// (records) at which it starts and stops shedding. Defaults 50000 and
	// 25000.
	InteractiveHigh, InteractiveLow int64
	// InteractiveQueueHigh, when positive, is a mark in time beside the
	// marks in records: the interactive lane (and the batch lane with it,
	// so batch work is still shed first) also sheds while its lag would
	// take longer than this to drain at the group's measured commit rate
	// (lag ÷ drain rate, the wait of a request admitted now), and admits
	// again below half of it. Unlike a count of records it means the same
	// for one worker or twelve, and on a machine that got slower. The lag
	// counts the requests in flight and those finished since the last
	// commit, so set it well above the model's usual time plus the
	// commit interval. No drain measured yet: the lane keeps its state.
	// 0: off.
	InteractiveQueueHigh time.Duration
	// MaxRetryAfter caps the Retry-After of a shed request, and is used
	// when the lag is not draining at all. Default 30s.
	MaxRetryAfter time.Duration
}

func (c *AdmissionConfig) setDefaults() {
	if c.Group == "" {
		c.Group = "switchboard-router"
	}
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.BatchHigh == 0 {
		c.BatchHigh = 20000
	}
	if c.BatchLow == 0 {
		c.BatchLow = c.BatchHigh / 2
	}
	if c.InteractiveHigh == 0 {
		c.InteractiveHigh = 50000
	}
	if c.InteractiveLow == 0 {
		c.InteractiveLow = c.InteractiveHigh / 2
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = 30 * time.Second
	}
}

func (c *AdmissionConfig) validate() error {
	if c.Interval < 0 || c.MaxRetryAfter < 0 || c.InteractiveQueueHigh < 0 {
		return errors.New("ingress: admission interval, max retry-after and interactive queue mark must not be negative")
	}
	// The low marks default to half their high marks (setDefaults), so
	// they are checked together with them, after the defaults.
	if c.BatchLow < 0 || c.BatchLow >= c.BatchHigh {
		return fmt.Errorf("ingress: batch lag marks need 0 <= low < high, have low %d, high %d (leave the low mark unset for half the high one)",
			c.BatchLow, c.BatchHigh)
	}
	if c.InteractiveLow < 0 || c.InteractiveLow >= c.InteractiveHigh {
		return fmt.Errorf("ingress: interactive lag marks need 0 <= low < high, have low %d, high %d (leave the low mark unset for half the high one)",
			c.InteractiveLow, c.InteractiveHigh)
	}
	return nil
}

// admission holds the lag-driven state of each lane.
type admission struct {
	cfg     AdmissionConfig
	topics  map[string]string // topic -> lane
	log     *slog.Logger
	metrics *metrics

	mu         sync.Mutex
	lag        map[string]int64   // by lane
	drain      map[string]float64 // records/s committed, by lane (EWMA)
	commitSum  map[string]int64
	lastRead   time.Time
	shedding   map[string]bool
	byLag      map[string]bool // the record marks' state, by lane
	byQueue    bool            // the interactive queue mark's state
	lastErrLog time.Time
}

func newAdmission(cfg AdmissionConfig, topics map[string]string, log *slog.Logger, m *metrics) *admission {
	a := &admission{cfg: cfg, topics: map[string]string{}, log: log, metrics: m,
		lag: map[string]int64{}, drain: map[string]float64{}, commitSum: map[string]int64{}, shedding: map[string]bool{}, byLag: map[string]bool{}}
	for lane, topic := range topics {
		a.topics[topic] = lane
		m.admissionShedding.WithLabelValues(lane).Set(0)
	}
	return a
}

// run reads the lag every Interval until ctx is done.
func (a *admission) run(ctx context.Context, adm *kadm.Client) {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, max(a.cfg.Interval, time.Second))
		lags, err := adm.Lag(rctx, a.cfg.Group)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			if l, ok := lags[a.cfg.Group]; ok {
				err = l.Error()
				switch {
				case err == nil:
					a.observe(time.Now(), l.Lag)
				case errors.Is(err, kerr.GroupIDNotFound):
					// No worker has joined yet: nothing is behind.
					err = nil
					a.observe(time.Now(), nil)
				}
			}
		}
		if err != nil {
			a.metrics.lagReadErrors.Inc()
			if time.Since(a.lastErrLog) > time.Minute {
				a.log.Warn("reading consumer lag failed; admission keeps its last state", "group", a.cfg.Group, "err", err)
				a.lastErrLog = time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observe takes one lag reading (nil: the group does not exist) and
// updates each lane's state.
func (a *admission) observe(now time.Time, gl kadm.GroupLag) {
	lag := map[string]int64{}
	commits := map[string]int64{}
	for topic, parts := range gl {
		lane, ok := a.topics[topic]
		if !ok {
			continue
		}
		for _, p := range parts {
			if p.Lag > 0 {
				lag[lane] += p.Lag
			}
			if p.Commit.At >= 0 {
				commits[lane] += p.Commit.At
			} else if p.Start.Err == nil {
				commits[lane] += p.Start.Offset
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.lastRead.IsZero() {
		dt := now.Sub(a.lastRead).Seconds()
		for _, lane := range []string{envelope.LaneInteractive, envelope.LaneBatch} {
			if dt <= 0 {
				break
			}
			rate := max(0, float64(commits[lane]-a.commitSum[lane])/dt)
			if a.drain[lane] == 0 {
				// The first rate measured starts the average: from zero it
				// would understate the rate, and overstate the wait the
				// queue mark judges, for the first few readings.
				a.drain[lane] = rate
				continue
			}
			a.drain[lane] = 0.5*a.drain[lane] + 0.5*rate
		}
	}
	a.lastRead = now
	if gl == nil {
		a.lastRead = time.Time{} // no group: the next reading starts the rate afresh
	}
	a.commitSum = commits
	a.lag = lag
	for _, lane := range []string{envelope.LaneInteractive, envelope.LaneBatch} {
		a.metrics.lag.WithLabelValues(lane).Set(float64(lag[lane]))
		a.metrics.drain.WithLabelValues(lane).Set(a.drain[lane])
	}
	total := lag[envelope.LaneInteractive] + lag[envelope.LaneBatch]
	queued := a.queued(lag[envelope.LaneInteractive], a.drain[envelope.LaneInteractive])
	a.update(envelope.LaneBatch, total, a.cfg.BatchHigh, a.cfg.BatchLow, queued)
	a.update(envelope.LaneInteractive, lag[envelope.LaneInteractive], a.cfg.InteractiveHigh, a.cfg.InteractiveLow, queued)
}

// queued updates and returns the interactive queue mark's state
// (InteractiveQueueHigh) from the interactive lag and drain rate.
func (a *admission) queued(lag int64, drain float64) bool {
	q := a.cfg.InteractiveQueueHigh.Seconds()
	if q <= 0 || drain <= 0 {
		return a.byQueue
	}
	wait := float64(lag) / drain
	switch {
	case !a.byQueue && wait > q:
		a.byQueue = true
	case a.byQueue && wait < q/2:
		a.byQueue = false
	}
	return a.byQueue
}

// update sets lane's state: shedding while its lag is between its marks
// after passing the high one (hysteresis), or while queued.
func (a *admission) update(lane string, lag, high, low int64, queued bool) {
	byLag := a.byLag[lane]
	switch {
	case !byLag && lag > high:
		byLag = true
	case byLag && lag < low:
		byLag = false
	}
	a.byLag[lane] = byLag
	was := a.shedding[lane]
	now := byLag || queued
	if now == was {
		return
	}
	a.shedding[lane] = now
	state := "admitting"
	v := 0.0
	if now {
		state, v = "shedding", 1
	}
	a.metrics.admissionShedding.WithLabelValues(lane).Set(v)
	a.metrics.admissionChanges.WithLabelValues(lane, state).Inc()
	a.log.Info("admission changed", "lane", lane, "state", state, "lag", lag, "high_mark", high, "low_mark", low, "queue_mark", queued)
}

// check returns the failure for a request on lane while that lane sheds.
// Batch work gets 429 (it can wait), interactive work 503. Retry-After is
// the time to drain the lag down to the low mark at the measured rate.
func (a *admission) check(lane string) *failure {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.shedding[lane] {
		return nil
	}
	behind, low := a.lag[envelope.LaneInteractive], a.cfg.InteractiveLow
	rate := a.drain[envelope.LaneInteractive]
	status := http.StatusServiceUnavailable
	if lane == envelope.LaneBatch {
		status = http.StatusTooManyRequests
		behind += a.lag[envelope.LaneBatch]
		low = a.cfg.BatchLow
		rate += a.drain[envelope.LaneBatch]
	}
	if q := a.cfg.InteractiveQueueHigh.Seconds(); a.byQueue && q > 0 {
		// Shedding on the queue mark: admitted again below half of it.
		low = min(low, int64(q/2*a.drain[envelope.LaneInteractive]))
	}
	excess := behind - low
	wait := a.cfg.MaxRetryAfter
	if rate > 0 && excess > 0 {
		wait = min(wait, max(time.Second, time.Duration(float64(excess)/rate*float64(time.Second))))
	}
	return &failure{status: status, code: "lag_shedding", retryAfter: wait,
		message: fmt.Sprintf("the %s lane is shedding load: the workers are %d records behind; retry later", lane, behind)}
}
