package keyorder

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Resuming a paused partition.
//
// franz-go keeps one fetch in flight per broker, a long poll that the
// broker answers when one of its partitions in the request has records or
// when FetchMaxWait (router-worker: 5s) has passed. A paused partition is
// left out of those requests, and ResumeFetchPartitions only marks it
// fetchable again: the fetch already waiting on its broker, for the
// broker's other partitions, is not cut short. When those partitions are
// idle, the resumed partition's records, already in Kafka, wait up to
// FetchMaxWait before the next request asks for them: a backlog that drained
// to the low mark sat idle for seconds with work waiting behind it.
//
// So the engine resumes in its poll loop instead, and makes the client
// start fetching anew: done (a handler goroutine) marks the partition due
// and ends the poll under way (wake); the loop, between that poll and
// AllowRebalance so that no rebalance runs meanwhile, resumes the due
// partitions and sets their fetch offsets to where the engine's records
// end (SetOffsets: the offset the client would fetch next anyway). Setting
// offsets restarts the client's fetch session: the requests waiting on the
// brokers are cancelled, fetched records not yet polled are dropped (and
// fetched again), and new requests include the resumed partitions.
// Resumes happen only after a backlog reached the high mark, so the cost of
// one more round of fetches is small.
//
// The offset is set with leader epoch -1 (no epoch validation): franz-go
// restarts the session only if the offset or epoch differs from its own,
// and its epoch is the last record's, never -1 on a current broker.

// pollContext returns the context of the next poll: ctx, ended also by
// wake.
func (e *Engine) pollContext(ctx context.Context) context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	pollCtx, cancel := context.WithCancel(ctx)
	e.wake = cancel
	if len(e.resumes) > 0 {
		cancel() // a resume is due already: return at once
	}
	return pollCtx
}

// endPoll releases the poll's context and reports whether wake ended it.
func (e *Engine) endPoll() (woken bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	woken = len(e.resumes) > 0
	e.wake()
	e.wake = nil
	return woken
}

// resumeSoon marks p due to be resumed by the poll loop and wakes the loop.
// e.mu must be held.
func (e *Engine) resumeSoon(p *partition) {
	p.resumeDue = true
	e.resumes = append(e.resumes, p)
	if e.wake != nil {
		e.wake()
	}
}

// resumeDuePartitions resumes the partitions due and restarts fetching at
// their ends (see above). Partitions released meanwhile were resumed by
// release. It runs in the poll loop only.
func (e *Engine) resumeDuePartitions() {
	e.mu.Lock()
	due := e.resumes
	e.resumes = nil
	resume := map[string][]int32{}
	at := map[string]map[int32]kgo.EpochOffset{}
	for _, p := range due {
		if !p.paused || !p.resumeDue {
			continue // released meanwhile: release resumed it
		}
		p.paused, p.resumeDue = false, false
		e.m.paused.Dec()
		resume[p.tp.topic] = append(resume[p.tp.topic], p.tp.partition)
		if e.parts[p.tp] == p && !p.closing && p.track != nil {
			if at[p.tp.topic] == nil {
				at[p.tp.topic] = map[int32]kgo.EpochOffset{}
			}
			at[p.tp.topic][p.tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: p.track.end}
		}
	}
	e.mu.Unlock()
	if len(resume) == 0 {
		return
	}
	e.cl.ResumeFetchPartitions(resume)
	if len(at) > 0 {
		e.cl.SetOffsets(at)
	}
}
