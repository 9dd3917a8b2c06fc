package presence

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a Member.
type Config struct {
	// Topic is the presence topic's full name. Required.
	Topic string
	// Instance is this instance's ID, unique among the running instances
	// (a pod name, or host and process ID). Required.
	Instance string
	// Interval is how often the instance publishes its record and
	// recomputes its shares. Default 1s.
	Interval time.Duration
	// Demand returns what the instance counted since the previous call, by
	// tenant: requests and estimated tokens (counts, not rates). Required;
	// called once per interval from one goroutine.
	Demand func() map[string]Demand
	// Apply receives the instance's shares after every interval. Required;
	// called from one goroutine.
	Apply func(Shares)
	// Logger receives state changes (degraded, recovered). Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Member publishes this instance's presence and demand and computes its
// shares (see the package comment).
type Member struct {
	cfg    Config
	run    string
	log    *slog.Logger
	smooth map[string]Demand // the published demand, per second; owned by Run's loop
	// crashed (tests) makes Run end without its tombstone, as a crash.
	crashed bool

	mu      sync.Mutex
	peers   map[string]*peer // by instance ID, this one's included
	ownSeen time.Time        // when a record of this run was last read back
	lastErr error            // the last produce or fetch error, for the degraded log
	caught  chan struct{}    // closed when the first record of this run is read back
	twin    bool             // another run's record under this ID was read after this run's first
}

type peer struct {
	rec  Record
	seen time.Time
}

// smoothing is the weight of the latest interval in the published demand.
const smoothing = 0.5

// New checks cfg and returns a Member.
func New(cfg Config) (*Member, error) {
	if cfg.Topic == "" || cfg.Instance == "" || cfg.Demand == nil || cfg.Apply == nil {
		return nil, errors.New("presence: topic, instance, demand and apply are required")
	}
	if len(cfg.Instance) > MaxNameBytes {
		return nil, errors.New("presence: instance ID longer than 256 bytes")
	}
	cfg.Interval = cmp.Or(cfg.Interval, time.Second)
	if cfg.Interval < minInterval || cfg.Interval > maxInterval {
		return nil, errors.New("presence: interval must be between 10ms and 1m")
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails
	return &Member{cfg: cfg, run: hex.EncodeToString(b), log: cfg.Logger, smooth: map[string]Demand{},
		peers: map[string]*peer{}, caught: make(chan struct{})}, nil
}

// ttl is how long after its last record an instance publishing every
// interval is taken as live.
func ttl(interval time.Duration) time.Duration { return 3 * interval }

// Run publishes and reads the presence topic with a client made from opts
// until ctx is done, applying the shares every interval; then it writes a
// tombstone for this instance (within 2 s) so the others take its share at
// once. It returns an error only when the client cannot be made.
func (m *Member) Run(ctx context.Context, opts []kgo.Opt) error {
	start := m.cfg.Now()
	lookback := ttl(maxInterval) // records of every instance still live
	cl, err := kgo.NewClient(append(slices.Clip(opts),
		kgo.ConsumeTopics(m.cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(start.Add(-lookback).UnixMilli())),
		kgo.FetchMaxWait(min(m.cfg.Interval, time.Second)),
		kgo.ProducerLinger(0),
		kgo.RecordDeliveryTimeout(max(ttl(m.cfg.Interval), time.Second)),
		kgo.MaxBufferedRecords(16),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	wg.Go(func() { m.read(rctx, cl) })

	degraded, known := false, 1
	tick := time.NewTicker(m.cfg.Interval)
	defer tick.Stop()
	last := start
	for first := true; ; first = false {
		now := m.cfg.Now()
		m.publish(ctx, cl, m.demand(now.Sub(last)))
		last = now
		if first { // wait (one interval at most) for the others' records before the first shares
			select {
			case <-m.caught:
			case <-tick.C:
			case <-ctx.Done():
			}
		}
		shares, ok := m.view(m.cfg.Now(), start)
		switch {
		case ok:
			if degraded {
				m.log.Info("tenant limits shared again through the presence topic", "instances", shares.Instances)
			}
			degraded, known = false, shares.Instances
		default:
			if !degraded {
				m.log.Warn("tenant limits fall back to limit/N: this instance cannot read its records on the presence topic",
					"topic", m.cfg.Topic, "instances", known, "err", m.lastError())
			}
			degraded, shares = true, Even(known, true)
		}
		m.cfg.Apply(shares)
		select {
		case <-ctx.Done():
			if !m.crashed {
				m.leave(ctx, cl)
			}
			return nil
		case <-tick.C:
		}
	}
}

// demand turns the counts of the last elapsed time into smoothed rates and
// returns the busiest MaxTenants.
func (m *Member) demand(elapsed time.Duration) map[string]Demand {
	counts := m.cfg.Demand()
	secs := max(elapsed.Seconds(), 1e-3)
	for name, d := range m.smooth {
		c := counts[name]
		d.Requests = smoothing*c.Requests/secs + (1-smoothing)*d.Requests
		d.Tokens = smoothing*c.Tokens/secs + (1-smoothing)*d.Tokens
		if d.Requests < 0.01 && d.Tokens < 0.01 { // gone quiet
			delete(m.smooth, name)
			continue
		}
		m.smooth[name] = d
	}
	for name, c := range counts {
		if _, ok := m.smooth[name]; !ok && (c.Requests > 0 || c.Tokens > 0) && valid(c.Requests) && valid(c.Tokens) &&
			name != "" && len(name) <= MaxNameBytes {
			m.smooth[name] = Demand{Requests: min(c.Requests/secs, maxDemand), Tokens: min(c.Tokens/secs, maxDemand)}
		}
	}
	if len(m.smooth) <= MaxTenants {
		return maps.Clone(m.smooth)
	}
	names := slices.SortedFunc(maps.Keys(m.smooth), func(a, b string) int {
		return cmp.Or(cmp.Compare(m.smooth[b].Requests, m.smooth[a].Requests), cmp.Compare(a, b))
	})
	out := make(map[string]Demand, MaxTenants)
	for _, name := range names[:MaxTenants] {
		out[name] = m.smooth[name]
	}
	return out
}

// publish writes this instance's record without waiting; a failure is
// kept for the degraded log (reading the record back is the health check).
func (m *Member) publish(ctx context.Context, cl *kgo.Client, tenants map[string]Demand) {
	rec := m.publishLocal(tenants)
	cl.TryProduce(ctx, &kgo.Record{Topic: m.cfg.Topic, Key: []byte(m.cfg.Instance), Value: Encode(&rec)},
		func(_ *kgo.Record, err error) {
			if err != nil && ctx.Err() == nil {
				m.setErr(err)
			}
		})
}

// publishLocal makes tenants this instance's own entry in its view and
// returns the record that publishes them.
func (m *Member) publishLocal(tenants map[string]Demand) Record {
	rec := Record{Instance: m.cfg.Instance, Run: m.run, IntervalMillis: m.cfg.Interval.Milliseconds(), Tenants: tenants}
	m.mu.Lock()
	m.peers[m.cfg.Instance] = &peer{rec: rec, seen: m.cfg.Now()}
	m.mu.Unlock()
	return rec
}

// forget drops another instance (its tombstone was read).
func (m *Member) forget(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id != m.cfg.Instance {
		delete(m.peers, id)
	}
}

// leave writes this instance's tombstone.
func (m *Member) leave(ctx context.Context, cl *kgo.Client) {
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	done := make(chan error, 1)
	cl.Produce(tctx, &kgo.Record{Topic: m.cfg.Topic, Key: []byte(m.cfg.Instance)}, func(_ *kgo.Record, err error) { done <- err })
	var err error
	select {
	case err = <-done:
	case <-tctx.Done(): // kgo may hold a record for an unreachable cluster past its context
		err = tctx.Err()
	}
	if err != nil {
		m.log.Warn("presence tombstone not written: the others take this instance's share when its record expires",
			"topic", m.cfg.Topic, "err", err)
	}
}

// read applies every record of the topic to the peers until ctx is done.
func (m *Member) read(ctx context.Context, cl *kgo.Client) {
	bad := map[string]bool{} // instances whose bad record was logged
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fetches.EachError(func(_ string, _ int32, err error) { m.setErr(err) })
		fetches.EachRecord(func(rec *kgo.Record) {
			key := string(rec.Key)
			if rec.Value == nil {
				m.forget(key)
				return
			}
			r, err := Decode(rec.Key, rec.Value)
			if err != nil {
				if !bad[key] && len(bad) < 100 {
					bad[key] = true
					m.log.Warn("skipping a presence record", "topic", rec.Topic, "offset", rec.Offset, "err", err)
				}
				return
			}
			m.apply(r, rec.Timestamp)
		})
	}
}

// apply records r, published at ts by its producer's clock.
func (m *Member) apply(r Record, ts time.Time) {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.Instance == m.cfg.Instance {
		switch {
		case r.Run == m.run:
			if m.ownSeen.IsZero() {
				close(m.caught)
			}
			m.ownSeen = now
		case !m.ownSeen.IsZero() && !m.twin: // not history: another process publishes under this ID
			m.twin = true
			m.log.Error("another ingress publishes presence under this instance ID: both count as one and the tenants get more than their limits; give each instance its own --instance-id",
				"instance", r.Instance)
		}
		return // this instance's view of itself is what it published last
	}
	seen := now
	if m.ownSeen.IsZero() && ts.Before(now) {
		// Records before this run's first are history read at start: their
		// age is their producer's timestamp's.
		seen = ts
	}
	m.peers[r.Instance] = &peer{rec: r, seen: seen}
}

// view returns the shares the live peers give, and false when this
// instance has not read its own record back recently (after a first
// interval of grace at start).
func (m *Member) view(now, start time.Time) (Shares, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	live := map[string]map[string]Demand{}
	for id, p := range m.peers {
		age := now.Sub(p.seen)
		switch {
		case id == m.cfg.Instance || age <= ttl(p.rec.Interval()):
			live[id] = p.rec.Tenants
		case age > ttl(maxInterval):
			delete(m.peers, id)
		}
	}
	grace := m.ownSeen.IsZero() && now.Sub(start) <= ttl(m.cfg.Interval)
	ok := grace || now.Sub(m.ownSeen) <= ttl(m.cfg.Interval)
	return Compute(m.cfg.Instance, live), ok
}

func (m *Member) setErr(err error) {
	m.mu.Lock()
	m.lastErr = err
	m.mu.Unlock()
}

func (m *Member) lastError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastErr
}
