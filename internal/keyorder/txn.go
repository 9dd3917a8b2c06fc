package keyorder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Exactly-once mode (Config.TransactionalID set): a handler does not
// produce its output records itself. It stages them with Stage and returns;
// the engine's commit then writes, in one Kafka transaction, every staged
// record of finished input records together with the partitions' low
// watermarks and finished-offset metadata (TxnOffsetCommit, fenced by the
// group generation as in KIP-447). A read_committed consumer therefore sees
// each input record's output exactly once: either the transaction commits
// both the output and the offsets that say the input is done, or neither.
//
// Output staged for a partition that is revoked before its transaction
// commits is dropped with the partition: its next owner starts from the
// last committed offsets and produces it again.

// staged is the output of one finished input record, waiting for a commit.
type staged struct {
	tp      topicPartition
	offset  int64
	records []*kgo.Record
}

// txnState holds staged output; guarded by Engine.mu.
type txnState struct {
	staged []staged
	mu     sync.Mutex          // serialises transactions; guards ids
	ids    map[string][16]byte // topic IDs by name
}

// Stage keeps records to be produced in the transaction that commits rec
// as finished. The handler must call it before returning nil for rec.
// Outside exactly-once mode it is an error to call.
func (e *Engine) Stage(rec *kgo.Record, records ...*kgo.Record) error {
	if e.txn == nil {
		return errors.New("keyorder: Stage needs exactly-once mode")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.txn.staged = append(e.txn.staged, staged{topicPartition{rec.Topic, rec.Partition}, rec.Offset, records})
	return nil
}

// commitTxn is commit for exactly-once mode: points are the offsets and
// metadata to commit (built under e.mu by commit), covered the staged
// output of the finished records they include.
func (e *Engine) commitTxn(ctx context.Context, points map[topicPartition]commitPoint, covered []staged) error {
	e.txn.mu.Lock()
	defer e.txn.mu.Unlock()
	restage := func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, s := range covered {
			if p := e.parts[s.tp]; p != nil && !p.closing {
				e.txn.staged = append(e.txn.staged, s)
			}
		}
	}
	if err := e.cl.BeginTransaction(); err != nil {
		restage()
		return fmt.Errorf("begin transaction: %w", err)
	}
	var (
		perr error
		pmu  sync.Mutex
		wg   sync.WaitGroup
	)
	for _, s := range covered {
		for _, r := range s.records {
			// A copy: kgo keeps the context and position of a produced
			// record, and this one may be produced again after an abort.
			cp := *r
			cp.Context = nil
			wg.Add(1)
			e.cl.Produce(ctx, &cp, func(_ *kgo.Record, err error) {
				defer wg.Done()
				if err != nil {
					pmu.Lock()
					perr = errors.Join(perr, err)
					pmu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	err := perr
	if err == nil {
		err = e.txnOffsetCommit(ctx, points)
	}
	how := kgo.TryCommit
	if err != nil {
		how = kgo.TryAbort
	}
	if eerr := e.cl.EndTransaction(ctx, how); eerr != nil {
		err = errors.Join(err, fmt.Errorf("end transaction: %w", eerr))
	}
	if err != nil {
		if how == kgo.TryCommit {
			// The commit's outcome is unknown; abort whatever is left so
			// the next transaction can begin.
			_ = e.cl.EndTransaction(ctx, kgo.TryAbort)
		}
		restage()
		return err
	}
	e.m.txnCommits.Inc()
	return nil
}

// txnOffsetCommit adds the group to the open transaction and commits
// points in it, fenced by the member's generation.
func (e *Engine) txnOffsetCommit(ctx context.Context, points map[topicPartition]commitPoint) error {
	id, epoch, err := e.cl.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("producer id: %w", err)
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID = e.cfg.TransactionalID
	add.ProducerID, add.ProducerEpoch, add.Group = id, epoch, e.cfg.Group
	resp, err := add.RequestWith(ctx, e.cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		return fmt.Errorf("add offsets to transaction: %w", err)
	}

	ids, err := e.topicIDs(ctx, points)
	if err != nil {
		return err
	}
	member, gen := e.cl.GroupMetadata()
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.TransactionalID = e.cfg.TransactionalID
	req.Group, req.ProducerID, req.ProducerEpoch = e.cfg.Group, id, epoch
	req.Generation, req.MemberID = gen, member
	if e.cfg.InstanceID != "" {
		req.InstanceID = &e.cfg.InstanceID
	}
	byTopic := map[string]int{}
	for tp, pt := range points {
		i, ok := byTopic[tp.topic]
		if !ok {
			i = len(req.Topics)
			byTopic[tp.topic] = i
			t := kmsg.NewTxnOffsetCommitRequestTopic()
			t.Topic = tp.topic        // up to v5
			t.TopicID = ids[tp.topic] // v6 and later
			req.Topics = append(req.Topics, t)
		}
		p := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		p.Partition, p.Offset, p.LeaderEpoch = tp.partition, pt.offset, -1
		md := pt.metadata
		p.Metadata = &md
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, p)
	}
	cresp, err := req.RequestWith(ctx, e.cl)
	if err != nil {
		return fmt.Errorf("transactional offset commit: %w", err)
	}
	for _, t := range cresp.Topics {
		for _, p := range t.Partitions {
			if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
				err = errors.Join(err, fmt.Errorf("%s%x/%d: %w", t.Topic, t.TopicID, p.Partition, perr))
			}
		}
	}
	return err
}

// topicIDs returns the IDs of the topics in points (TxnOffsetCommit v6+
// names topics by ID), from a cache filled from metadata.
func (e *Engine) topicIDs(ctx context.Context, points map[topicPartition]commitPoint) (map[string][16]byte, error) {
	var missing []string
	for tp := range points {
		if _, ok := e.txn.ids[tp.topic]; !ok && !slices.Contains(missing, tp.topic) {
			missing = append(missing, tp.topic)
		}
	}
	if len(missing) > 0 {
		td, err := e.adm.ListTopics(ctx, missing...)
		if err != nil {
			return nil, fmt.Errorf("topic ids: %w", err)
		}
		if e.txn.ids == nil {
			e.txn.ids = map[string][16]byte{}
		}
		for _, t := range td {
			if t.Err == nil {
				e.txn.ids[t.Topic] = t.ID
			}
		}
	}
	return e.txn.ids, nil
}
