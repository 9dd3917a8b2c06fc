package keyorder

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// partition is the engine's state for one assigned partition.
type partition struct {
	tp       topicPartition
	lane     *lane
	track    *tracker     // nil until the start offset is known
	skip     *finishedSet // finished by an earlier owner (from commit metadata)
	convs    map[string]*conv
	buffered int // records waiting or in flight
	inflight int
	paused   bool // paused in the client (see resume.go)
	// resumeDue: the backlog fell to the low mark; the poll loop resumes
	// the partition (resume.go). It stays paused in the client until then.
	resumeDue bool
	parked    []*conv // ready, but held back by the metadata bound
	closing   bool    // revoked, lost or stopping: nothing new starts
	idle      chan struct{}
	ctx       context.Context // parent of the partition's handler calls
	cancel    context.CancelFunc

	committed   int64 // last committed offset and metadata
	committedMD string
}

// conv is one key's queue within a partition. busy: a record of the key
// is in flight. queued: the conv sits in its lane's ready list or in its
// partition's parked list.
type conv struct {
	key    string
	p      *partition
	queue  []item
	busy   bool
	queued bool
}

// item is a record taken from its partition, with the first offset of its
// claim in the partition's tracker (see tracker.take).
type item struct {
	rec  *kgo.Record
	from int64
}

// lane is a topic's share of the in-flight budget and its ready list of
// keys whose next record can start.
type lane struct {
	topic    string
	max      int
	inflight int
	ready    []*conv
}

// add takes fetched records of one partition into their keys' queues.
func (e *Engine) add(topic string, partition int32, recs []*kgo.Record) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.parts[topicPartition{topic, partition}]
	if p == nil || p.closing {
		return // revoked meanwhile: the next owner reads them again
	}
	skipped := 0
	now, delay := time.Now(), e.m.fetchDelay.WithLabelValues(topic)
	for _, rec := range recs {
		if p.track == nil {
			p.track = newTracker(rec.Offset)
			p.committed = -1
		}
		if rec.Offset < p.track.end {
			continue // already taken
		}
		if !rec.Timestamp.IsZero() {
			delay.Observe(max(0, now.Sub(rec.Timestamp).Seconds()))
		}
		from := p.track.take(rec.Offset)
		if p.skip != nil && p.skip.contains(rec.Offset) {
			p.track.finish(from, rec.Offset)
			skipped++
			continue
		}
		key := string(rec.Key)
		c := p.convs[key]
		if c == nil {
			c = &conv{key: key, p: p}
			p.convs[key] = c
		}
		c.queue = append(c.queue, item{rec, from})
		p.buffered++
		if !c.busy && !c.queued {
			e.makeReady(c)
		}
	}
	if skipped > 0 {
		e.m.skipped.Add(float64(skipped))
	}
	if !p.paused && p.buffered >= e.cfg.HighMark {
		p.paused = true
		e.cl.PauseFetchPartitions(map[string][]int32{topic: {partition}})
		e.m.paused.Inc()
	}
	e.m.queued.WithLabelValues(topic, itoa(partition)).Set(float64(p.buffered - p.inflight))
	e.dispatch()
}

func (e *Engine) makeReady(c *conv) {
	c.queued = true
	c.p.lane.ready = append(c.p.lane.ready, c)
}

// dispatch starts records while budgets allow, taking lanes in turn.
// e.mu must be held.
func (e *Engine) dispatch() {
	n := len(e.laneOrder)
	for e.inflight < e.cfg.MaxInFlight {
		started := false
		for i := range n {
			l := e.laneOrder[(e.rr+i)%n]
			if l.inflight >= l.max {
				continue
			}
			c := e.popReady(l)
			if c == nil {
				continue
			}
			e.start(c)
			e.rr = (e.rr + i + 1) % n
			started = true
			break
		}
		if !started {
			return
		}
	}
}

// popReady returns the next conv of l that may start now, parking those the
// metadata bound holds back and dropping stale entries.
func (e *Engine) popReady(l *lane) *conv {
	for len(l.ready) > 0 {
		c := l.ready[0]
		l.ready[0] = nil
		l.ready = l.ready[1:]
		c.queued = false
		if c.p.closing || c.busy || len(c.queue) == 0 {
			continue
		}
		if e.heldBack(c) {
			c.queued = true
			c.p.parked = append(c.p.parked, c)
			continue
		}
		return c
	}
	return nil
}

// heldBack reports whether starting c's next record could let its
// partition's commit metadata outgrow MetadataLimit. The record at the
// watermark is never held back: finishing it only shrinks the metadata.
func (e *Engine) heldBack(c *conv) bool {
	t := c.p.track
	if c.queue[0].from == t.watermark() {
		return false
	}
	return t.metadataSize()+(c.p.inflight+1)*t.growthBound() > e.cfg.MetadataLimit
}

func (e *Engine) start(c *conv) {
	it := c.queue[0]
	c.queue[0] = item{}
	c.queue = c.queue[1:]
	c.busy = true
	p := c.p
	p.inflight++
	p.lane.inflight++
	e.inflight++
	e.m.inflight.WithLabelValues(p.lane.topic).Inc()
	e.wg.Add(1)
	go e.run(p.ctx, c, it)
}

// run calls the handler until it succeeds or the partition's context ends.
func (e *Engine) run(ctx context.Context, c *conv, it item) {
	defer e.wg.Done()
	rec := it.rec
	backoff := e.cfg.RetryBackoff
	for {
		err := e.cfg.Handler(ctx, rec)
		if err == nil {
			e.done(c, it, true)
			return
		}
		if d, ok := later(err); ok && ctx.Err() == nil {
			e.postpone(c, it, d)
			return
		}
		if ctx.Err() != nil {
			e.done(c, it, false)
			return
		}
		e.m.retries.Inc()
		e.log.Warn("handler failed; retrying the record in place", "topic", rec.Topic,
			"partition", rec.Partition, "offset", rec.Offset, "backoff", backoff, "err", err)
		select {
		case <-ctx.Done():
			e.done(c, it, false)
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, e.cfg.MaxRetryBackoff)
	}
}

// done records the end of a handler call and starts what can start next.
func (e *Engine) done(c *conv, it item, finished bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := c.p
	c.busy = false
	p.inflight--
	p.buffered--
	p.lane.inflight--
	e.inflight--
	e.m.inflight.WithLabelValues(p.lane.topic).Dec()
	if finished {
		p.track.finish(it.from, it.rec.Offset)
	}
	if p.closing {
		if p.inflight == 0 && p.idle != nil {
			close(p.idle)
			p.idle = nil
		}
		e.dispatch() // the budget it held may start other partitions' work
		return
	}
	switch {
	case len(c.queue) > 0:
		if !c.queued {
			e.makeReady(c)
		}
	case !c.queued:
		delete(p.convs, c.key)
	}
	if len(p.parked) > 0 {
		p.lane.ready = append(p.lane.ready, p.parked...) // still queued
		p.parked = p.parked[:0]
	}
	if p.paused && !p.resumeDue && p.buffered <= e.cfg.LowMark {
		e.resumeSoon(p)
	}
	e.m.queued.WithLabelValues(p.tp.topic, itoa(p.tp.partition)).Set(float64(p.buffered - p.inflight))
	e.dispatch()
}
