package keyorder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commitTimeout bounds one commit, transaction included. Commits never run
// on a caller's context: a commit cut off half-way leaves its outcome
// unknown, so each gets this bound from the engine's base context instead.
const commitTimeout = 15 * time.Second

// commitPoint is what a partition commits: its low watermark and the
// finished-offset metadata above it.
type commitPoint struct {
	p        *partition
	offset   int64
	metadata string
}

// commit commits the low watermark and finished-offset metadata of every
// partition that changed since its last commit: of the partitions in only,
// or, when only is nil, of every partition not being released (a release
// commits its partitions itself). In exactly-once mode it does so in a
// transaction with the staged output of the finished records (see txn.go).
//
// Commits are serialised by commitMu from the snapshot of what to commit
// until the engine has recorded the outcome, so that an older watermark is
// never sent after a newer one and staged output is never in two
// transactions at once.
func (e *Engine) commit(only map[*partition]bool) error {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	if err := e.fatal.Load(); err != nil {
		return *err
	}
	ctx, cancel := context.WithTimeout(e.base, commitTimeout)
	defer cancel()

	want, covered, member, err := e.snapshot(only)
	if err != nil {
		e.restage(covered)
		e.fail(err)
		return err
	}
	if len(want) == 0 || (e.txn != nil && len(covered) == 0) {
		// In exactly-once mode offsets move with output: franz-go ends a
		// transaction that produced nothing without sending EndTxn, which
		// would leave offsets alone in it pending until it times out.
		if len(covered) > 0 {
			e.restage(covered)
		}
		return nil
	}

	start := time.Now()
	defer func() { e.m.commitSeconds.Observe(time.Since(start).Seconds()) }()
	if e.txn != nil {
		committed, err := e.commitTxn(ctx, want, covered, member.id, member.gen)
		if committed {
			e.markCommitted(want)
		} else {
			e.restage(covered)
		}
		return err
	}
	err = e.commitOffsets(ctx, want)
	e.markCommitted(want)
	return err
}

// snapshot returns, under the engine's lock, what a commit of only (nil:
// every partition not being released) sends: the commit point of each
// partition that changed since its last commit and, in exactly-once mode,
// the staged output of finished records, taken off the staged list. It
// fails with the output taken when a partition's metadata is over its
// limit in exactly-once mode: the caller puts it back and stops.
//
// It also returns the group membership the partitions are held under, read
// under the same lock: franz-go calls OnPartitionsLost (whose release takes
// e.mu) before it rejoins under a new member ID or generation, so a
// partition in the snapshot is still this membership's. A transactional
// offset commit sent under it is fenced (KIP-447) if the group has moved
// on meanwhile, instead of committing, under a newer membership, work
// another member may have started again.
func (e *Engine) snapshot(only map[*partition]bool) (map[topicPartition]commitPoint, []staged, membership, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var m membership
	m.id, m.gen = e.cl.GroupMetadata()
	covered := e.takeStaged(only)
	want := map[topicPartition]commitPoint{}
	for tp, p := range e.parts {
		if p.track == nil || (only == nil && p.closing) || (only != nil && !only[p]) {
			continue
		}
		w, md := p.track.watermark(), p.track.metadata()
		e.m.finishedAbove.WithLabelValues(tp.topic, itoa(tp.partition)).Set(float64(p.track.finishedAbove()))
		e.m.metadataBytes.WithLabelValues(tp.topic, itoa(tp.partition)).Set(float64(len(md)))
		if len(md) > e.cfg.MetadataLimit {
			// Admission keeps this from happening. Should it, the
			// watermark alone is safe at least once (the next owner redoes
			// the work); in exactly-once mode it would commit output
			// without the offsets that record it.
			err := fmt.Errorf("commit metadata of %s/%d is %d bytes, over its %d-byte limit",
				tp.topic, tp.partition, len(md), e.cfg.MetadataLimit)
			if e.txn != nil {
				return nil, covered, m, err
			}
			e.log.Error("committing the watermark alone", "err", err)
			md = ""
		}
		if w == p.committed && md == p.committedMD {
			continue
		}
		want[tp] = commitPoint{p, w, md}
	}
	return want, covered, m, nil
}

// membership is a group member ID and generation (member epoch with
// KIP-848).
type membership struct {
	id  string
	gen int32
}

// takeStaged takes the staged output of finished records that a commit of
// only goes with off the staged list (exactly-once mode; nil otherwise).
// Output of records not yet finished (staged between their handler's
// Stage and its return) waits for the next commit. e.mu is held.
func (e *Engine) takeStaged(only map[*partition]bool) []staged {
	if e.txn == nil {
		return nil
	}
	var covered []staged
	rest := e.txn.staged[:0]
	for _, s := range e.txn.staged {
		switch {
		case e.parts[s.p.tp] != s.p:
			// released: its next owner redoes it
		case only == nil && s.p.closing, only != nil && !only[s.p]:
			rest = append(rest, s) // another commit takes it
		case s.p.track.isFinished(s.offset):
			covered = append(covered, s)
		default:
			rest = append(rest, s)
		}
	}
	clear(e.txn.staged[len(rest):])
	e.txn.staged = rest
	return covered
}

// commitOffsets commits want's watermarks with their metadata (added to
// the OffsetCommit request by a pre-commit hook). Partitions whose commit
// failed are removed from want, so that only what the cluster holds is
// marked committed.
func (e *Engine) commitOffsets(ctx context.Context, want map[topicPartition]commitPoint) error {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	for tp, pt := range want {
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: pt.offset}
	}
	ctx = kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for j := range t.Partitions {
				pp := &t.Partitions[j]
				md := want[topicPartition{t.Topic, pp.Partition}].metadata
				pp.Metadata = &md
			}
		}
		return nil
	})
	var err error
	e.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, cerr error) {
		if cerr != nil {
			err = cerr
			clear(want) // the request failed: nothing was committed
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					err = errors.Join(err, perr)
					delete(want, topicPartition{t.Topic, p.Partition})
				}
			}
		}
	})
	return err
}

// markCommitted records what the cluster now holds for each partition, so
// unchanged partitions are not committed again.
func (e *Engine) markCommitted(points map[topicPartition]commitPoint) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, pt := range points {
		pt.p.committed, pt.p.committedMD = pt.offset, pt.metadata
	}
}

// restage puts the output of a transaction that did not commit back in
// front of the staged list, in its order: a key's later output may have
// been staged meanwhile and must stay behind it. Output of partitions
// released meanwhile is dropped: their next owner redoes it.
func (e *Engine) restage(covered []staged) {
	e.mu.Lock()
	defer e.mu.Unlock()
	keep := slices.DeleteFunc(covered, func(s staged) bool { return e.parts[s.p.tp] != s.p })
	e.txn.staged = append(keep, e.txn.staged...)
}

// commitLoop commits every CommitInterval until stop is closed. A commit
// under way when stop closes runs to its end: Run waits for it.
func (e *Engine) commitLoop(stop <-chan struct{}) {
	t := time.NewTicker(e.cfg.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := e.commit(nil); err != nil {
				e.log.Warn("commit failed", "err", err)
			}
		}
	}
}
