package keyorder

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commitPoint is what a partition commits: its low watermark and the
// finished-offset metadata above it.
type commitPoint struct {
	offset   int64
	metadata string
}

// commit commits the low watermark and finished-offset metadata of every
// partition (or of those in only) that changed since its last commit. In
// exactly-once mode it does so in a transaction with the staged output of
// the finished records (see txn.go).
func (e *Engine) commit(ctx context.Context, only map[topicPartition]bool) error {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	want := map[topicPartition]commitPoint{}
	var covered []staged
	e.mu.Lock()
	if e.txn != nil {
		// Staged output of finished records goes into this commit; output
		// of records not yet finished (staged between their handler's
		// Stage and its return) waits for the next one.
		rest := e.txn.staged[:0]
		for _, s := range e.txn.staged {
			p := e.parts[s.tp]
			switch {
			case p == nil:
				// released: its next owner redoes it
			case p.closing && only == nil:
				rest = append(rest, s) // its release commits it
			case (only == nil || only[s.tp]) && p.track.isFinished(s.offset):
				covered = append(covered, s)
			default:
				rest = append(rest, s)
			}
		}
		e.txn.staged = rest
	}
	for tp, p := range e.parts {
		if p.track == nil || (only != nil && !only[tp]) {
			continue
		}
		if e.txn != nil && p.closing && only == nil {
			continue // its release commits it, with its staged output
		}
		w, md := p.track.watermark(), p.track.metadata()
		e.m.finishedAbove.WithLabelValues(tp.topic, itoa(tp.partition)).Set(float64(p.track.finishedAbove()))
		e.m.metadataBytes.WithLabelValues(tp.topic, itoa(tp.partition)).Set(float64(len(md)))
		if w == p.committed && md == p.committedMD {
			continue
		}
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: w}
		want[tp] = commitPoint{w, md}
	}
	e.mu.Unlock()
	if e.txn != nil {
		if len(covered) == 0 {
			return nil // offsets move with the next output; nothing to make visible
		}
		start := time.Now()
		err := e.commitTxn(ctx, want, covered)
		e.m.commitSeconds.Observe(time.Since(start).Seconds())
		if err != nil {
			return err
		}
		e.markCommitted(want)
		return nil
	}
	if len(want) == 0 {
		return nil
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
	start := time.Now()
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
	e.m.commitSeconds.Observe(time.Since(start).Seconds())
	e.markCommitted(want)
	return err
}

// markCommitted records what the cluster now holds for each partition, so
// unchanged partitions are not committed again.
func (e *Engine) markCommitted(points map[topicPartition]commitPoint) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for tp, w := range points {
		if p := e.parts[tp]; p != nil {
			p.committed, p.committedMD = w.offset, w.metadata
		}
	}
}
