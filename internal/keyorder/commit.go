package keyorder

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// commit commits the low watermark and finished-offset metadata of every
// partition (or of those in only) that changed since its last commit.
func (e *Engine) commit(ctx context.Context, only map[topicPartition]bool) error {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	type pending struct {
		offset int64
		md     string
	}
	want := map[topicPartition]pending{}
	e.mu.Lock()
	for tp, p := range e.parts {
		if p.track == nil || (only != nil && !only[tp]) {
			continue
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
		want[tp] = pending{w, md}
	}
	e.mu.Unlock()
	if len(want) == 0 {
		return nil
	}

	ctx = kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for j := range t.Partitions {
				pp := &t.Partitions[j]
				md := want[topicPartition{t.Topic, pp.Partition}].md
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
	if err != nil && len(want) == 0 {
		return err
	}
	e.mu.Lock()
	for tp, w := range want {
		if p := e.parts[tp]; p != nil {
			p.committed, p.committedMD = w.offset, w.md
		}
	}
	e.mu.Unlock()
	return err
}
