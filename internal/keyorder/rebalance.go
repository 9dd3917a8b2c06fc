package keyorder

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func itoa(p int32) string { return strconv.Itoa(int(p)) }

// assigned creates the state of new partitions. It reads the group's
// committed offsets and their metadata, so work an earlier owner finished
// above its committed watermark is skipped. Unreadable metadata is logged
// and ignored: processing starts from the watermark, which is safe.
func (e *Engine) assigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	if !e.waitRunning(ctx) {
		return
	}
	e.m.rebalances.WithLabelValues("assigned").Inc()
	committed, err := e.fetchCommitted(ctx, assigned)
	if err != nil {
		e.log.Warn("cannot read committed metadata; finished work above the watermark will run again", "err", err)
	}
	taken := e.take(assigned, committed)
	e.log.Info("partitions assigned", "partitions", assigned)
	if e.cfg.OnAssigned != nil && len(taken) > 0 {
		e.cfg.OnAssigned(ctx, taken)
	}
}

// take creates the state of the partitions of assigned the engine does not
// hold yet, and returns them with their committed offsets (-1: none).
func (e *Engine) take(assigned map[string][]int32, committed kadm.OffsetResponses) map[string]map[int32]int64 {
	taken := map[string]map[int32]int64{}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.joined = true
	for topic, parts := range assigned {
		l := e.lanes[topic]
		for _, part := range parts {
			tp := topicPartition{topic, part}
			if e.parts[tp] != nil {
				continue
			}
			p := &partition{tp: tp, lane: l, convs: map[string]*conv{}, committed: -1}
			p.ctx, p.cancel = context.WithCancel(e.base)
			if o, ok := committed.Lookup(topic, part); ok && o.Err == nil && o.At >= 0 {
				p.track = newTracker(o.At)
				p.committed, p.committedMD = o.At, o.Metadata
				fs, derr := decodeMetadata(o.At, o.Metadata)
				if derr != nil {
					e.log.Warn("unreadable commit metadata; processing from the watermark", "topic", topic,
						"partition", part, "offset", o.At, "err", derr)
				}
				p.skip = fs
			}
			e.parts[tp] = p
			if taken[topic] == nil {
				taken[topic] = map[int32]int64{}
			}
			taken[topic][part] = p.committed
		}
	}
	return taken
}

// fetchCommitted reads the committed offsets and metadata of parts. At
// least once, failures are retried for up to fetchCommittedFor: without
// metadata, finished work above the watermarks runs again, which is
// allowed. In exactly-once mode that would repeat committed output, so it
// waits for stable offsets (no transaction pending on them) as long as the
// callback's context lasts, as franz-go's own offset fetch does.
func (e *Engine) fetchCommitted(ctx context.Context, parts map[string][]int32) (kadm.OffsetResponses, error) {
	if e.txn != nil {
		return e.fetchStable(ctx, parts)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchCommittedFor)
	defer cancel()
	return e.fetchOffsets(ctx, parts)
}

// fetchCommittedFor bounds fetchCommitted's retries at least once; a
// rebalance callback should not block the group for long.
const fetchCommittedFor = 10 * time.Second

// fetchStable reads parts' committed offsets once none is pending in a
// transaction, retrying until ctx ends.
func (e *Engine) fetchStable(ctx context.Context, parts map[string][]int32) (kadm.OffsetResponses, error) {
	return e.fetchOffsets(kadm.RequireStable(ctx), parts)
}

// fetchOffsets reads parts' committed offsets, retrying failures with
// backoff until ctx ends. Errors of partitions outside parts are ignored.
func (e *Engine) fetchOffsets(ctx context.Context, parts map[string][]int32) (kadm.OffsetResponses, error) {
	topics := make([]string, 0, len(parts))
	for t := range parts {
		topics = append(topics, t)
	}
	backoff := 100 * time.Millisecond
	for {
		got, err := e.adm.FetchOffsetsForTopics(ctx, e.cfg.Group, topics...)
		if err == nil {
			for t, ps := range parts {
				for _, p := range ps {
					if o, ok := got.Lookup(t, p); ok && o.Err != nil {
						err = fmt.Errorf("%s/%d: %w", t, p, o.Err)
					}
				}
			}
		}
		if err == nil {
			return got, nil
		}
		e.log.Warn("reading committed offsets failed; retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return got, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// revoked stops the partitions: nothing new starts, queued records are
// dropped, in-flight ones get RevokeTimeout to finish; then what finished
// is committed. It returns only when no handler of those partitions runs,
// so a partition handed straight back never runs one key twice at once.
func (e *Engine) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	if !e.waitRunning(ctx) {
		return
	}
	e.m.rebalances.WithLabelValues("revoked").Inc()
	e.log.Info("partitions revoked", "partitions", revoked)
	e.release(revoked, e.cfg.RevokeTimeout, true) //nolint:contextcheck // commits run on the engine's base context, never a caller's: one cut off half-way leaves its outcome unknown (commitTimeout)
}

// lost drops the partitions at once, without committing: another member
// owns them now.
func (e *Engine) lost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	if !e.waitRunning(ctx) {
		return
	}
	e.m.rebalances.WithLabelValues("lost").Inc()
	e.log.Warn("partitions lost", "partitions", lost)
	e.mu.Lock()
	e.joined = false // until the group assigns again
	e.mu.Unlock()
	e.release(lost, 0, false) //nolint:contextcheck // commits run on the engine's base context, never a caller's: one cut off half-way leaves its outcome unknown (commitTimeout)
}

// waitRunning waits until Run has started; false if ctx ends first (the
// client is closing without Run ever starting: there is no state).
func (e *Engine) waitRunning(ctx context.Context) bool {
	select {
	case <-e.running:
		return true
	case <-ctx.Done():
		return false
	}
}

// release closes parts: see revoked. wait 0 cancels in-flight work at once.
// A partition another release is already closing (a rebalance during the
// shutdown drain) is waited for too, so that when this returns no handler
// of any of parts runs.
func (e *Engine) release(parts map[string][]int32, wait time.Duration, commit bool) {
	var closing []*partition
	e.mu.Lock()
	for topic, ps := range parts {
		for _, part := range ps {
			p := e.parts[topicPartition{topic, part}]
			if p == nil {
				continue
			}
			closing = append(closing, p)
			if p.closing {
				continue
			}
			p.closing = true
			p.buffered = p.inflight // queued records are dropped
			p.convs = nil
			p.parked = nil
			if p.inflight > 0 {
				p.idle = make(chan struct{})
			}
			if p.paused {
				p.paused, p.resumeDue = false, false
				e.cl.ResumeFetchPartitions(map[string][]int32{topic: {part}})
				e.m.paused.Dec()
			}
		}
	}
	e.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	for _, p := range closing {
		e.mu.Lock()
		idle := p.idle
		e.mu.Unlock()
		if idle == nil {
			continue
		}
		if wait <= 0 {
			p.cancel()
		}
		select {
		case <-idle:
		case <-timer.C:
			e.log.Warn("in-flight records did not finish in time; cancelling them", "topic", p.tp.topic, "partition", p.tp.partition)
			for _, q := range closing {
				q.cancel()
			}
			<-idle
		}
	}

	if commit && len(closing) > 0 {
		only := map[*partition]bool{}
		for _, p := range closing {
			only[p] = true
		}
		if err := e.commit(only); err != nil {
			e.log.Warn("commit of released partitions failed", "err", err)
		}
	}
	e.mu.Lock()
	if e.txn != nil {
		// What was not committed above is redone by the next owner.
		e.txn.staged = slices.DeleteFunc(e.txn.staged, func(s staged) bool { return slices.Contains(closing, s.p) })
	}
	released := map[string][]int32{}
	for _, p := range closing {
		p.cancel()
		if e.parts[p.tp] == p {
			released[p.tp.topic] = append(released[p.tp.topic], p.tp.partition)
			delete(e.parts, p.tp)
			e.m.queued.DeleteLabelValues(p.tp.topic, itoa(p.tp.partition))
			e.m.finishedAbove.DeleteLabelValues(p.tp.topic, itoa(p.tp.partition))
			e.m.metadataBytes.DeleteLabelValues(p.tp.topic, itoa(p.tp.partition))
		}
	}
	e.mu.Unlock()
	if e.cfg.OnReleased != nil && len(released) > 0 {
		e.cfg.OnReleased(released)
	}
}
