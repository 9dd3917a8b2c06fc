package keyorder

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

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
// p is the partition incarnation that took the record: output of a
// partition released (and perhaps assigned back) before it commits is
// dropped with that incarnation.
type staged struct {
	p       *partition
	offset  int64
	records []*kgo.Record
}

// txnState is exactly-once mode's state.
type txnState struct {
	staged []staged            // guarded by Engine.mu
	ids    map[string][16]byte // topic IDs by name; guarded by Engine.commitMu
}

// Stage keeps records to be produced in the transaction that commits rec
// as finished. The handler must call it before returning nil for rec.
// Outside exactly-once mode it is an error to call. A record without output
// needs no Stage: its offset is committed with the next transaction that
// carries output.
func (e *Engine) Stage(rec *kgo.Record, records ...*kgo.Record) error {
	if e.txn == nil {
		return errors.New("keyorder: Stage needs exactly-once mode")
	}
	if len(records) == 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.parts[topicPartition{rec.Topic, rec.Partition}]
	if p == nil || p.track == nil {
		return fmt.Errorf("keyorder: Stage: %s/%d is not assigned", rec.Topic, rec.Partition)
	}
	e.txn.staged = append(e.txn.staged, staged{p, rec.Offset, records})
	return nil
}

// commitTxn is commit for exactly-once mode: in one transaction it writes
// the staged output covered and commits points, the offsets and metadata
// built with it. It reports whether the transaction committed. When the
// outcome of ending the transaction is unknown (the broker's answer was
// lost), it aborts whatever may still be open and reads the group's stable
// offsets to learn it: a committed transaction left points there. member
// and gen are the group membership the points were taken under.
func (e *Engine) commitTxn(ctx context.Context, points map[topicPartition]commitPoint, covered []staged, member string, gen int32) (bool, error) {
	if err := e.cl.BeginTransaction(); err != nil {
		// A transaction left open by a failed abort: end it, then begin.
		if aerr := e.abortTxn(); aerr != nil { //nolint:contextcheck // commits run on the engine's base context, never a caller's: one cut off half-way leaves its outcome unknown (commitTimeout)
			return false, fmt.Errorf("begin transaction: %w (aborting the open one: %w)", err, aerr)
		}
		if err = e.cl.BeginTransaction(); err != nil {
			// Nothing was begun, so nothing is unknown; but a producer
			// that cannot begin after an abort has failed for good.
			err = fmt.Errorf("begin transaction: %w", err)
			e.fail(err)
			return false, err
		}
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
		err = e.txnOffsetCommit(ctx, points, member, gen)
	}
	if err != nil {
		if aerr := e.abortTxn(); aerr != nil { //nolint:contextcheck // commits run on the engine's base context, never a caller's: one cut off half-way leaves its outcome unknown (commitTimeout)
			err = errors.Join(err, aerr)
		}
		return false, err
	}
	eerr := e.cl.EndTransaction(ctx, kgo.TryCommit)
	if eerr == nil {
		e.m.txnCommits.Inc()
		return true, nil
	}
	err = fmt.Errorf("end transaction: %w", eerr)
	if aerr := e.abortTxn(); aerr != nil { //nolint:contextcheck // commits run on the engine's base context, never a caller's: one cut off half-way leaves its outcome unknown (commitTimeout)
		return false, errors.Join(err, aerr)
	}
	committed, oerr := e.txnLanded(points) //nolint:contextcheck // commits run on the engine's base context, never a caller's: one cut off half-way leaves its outcome unknown (commitTimeout)
	if oerr != nil {
		// Writing the output again could repeat it; not writing it could
		// lose it. Stop: the next owners start from the stable offsets.
		err = errors.Join(err, oerr)
		e.fail(err)
		return false, err
	}
	if committed {
		e.log.Warn("ending a transaction failed, but it committed", "err", eerr)
		e.m.txnCommits.Inc()
		return true, nil
	}
	return false, err
}

// abortTxn ends whatever transaction the client has open, retrying a few
// times: after a lost answer, franz-go's documented recovery is to retry
// the end with TryAbort (it fences off the old transaction by bumping the
// producer epoch). Nothing buffered is left by then: commitTxn waits for
// every produce before it ends a transaction.
func (e *Engine) abortTxn() error {
	var err error
	for i := range 5 {
		if i > 0 {
			time.Sleep(time.Duration(i) * 200 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(e.base, commitTimeout)
		err = e.cl.EndTransaction(ctx, kgo.TryAbort)
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("abort transaction: %w", err)
}

// txnLanded reports whether a transaction whose end was not confirmed
// committed points: the group's stable offsets (no transaction pending)
// equal them. Points hold only partitions whose offsets or metadata differ
// from what was committed before, so equality means this transaction
// wrote them. Offsets stay unstable while any transaction touching them is
// pending, so reading is retried for longer than the transaction timeout.
func (e *Engine) txnLanded(points map[topicPartition]commitPoint) (bool, error) {
	if len(points) == 0 {
		return false, errors.New("a transaction of output alone has no offsets to tell its outcome by")
	}
	ctx, cancel := context.WithTimeout(e.base, e.txnTimeout+commitTimeout)
	defer cancel()
	want := map[string][]int32{}
	for tp := range points {
		want[tp.topic] = append(want[tp.topic], tp.partition)
	}
	got, err := e.fetchStable(ctx, want)
	if err != nil {
		return false, fmt.Errorf("read committed offsets: %w", err)
	}
	for tp, pt := range points {
		o, ok := got.Lookup(tp.topic, tp.partition)
		if !ok || o.At != pt.offset || o.Metadata != pt.metadata {
			return false, nil
		}
	}
	return true, nil
}

// txnOffsetCommit adds the group to the open transaction and commits
// points in it, fenced by member and gen: the membership the points were
// taken under, not the client's current one (which may be newer after a
// lost session and a rejoin, when another member owns the partitions).
func (e *Engine) txnOffsetCommit(ctx context.Context, points map[topicPartition]commitPoint, member string, gen int32) error {
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
