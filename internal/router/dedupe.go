package router

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// Answered once: a request ID repeated in a requests partition (an
// Idempotency-Key retried through another ingress instance produces the
// same request ID again, keyed by the same conversation, so into the same
// partition) is handled only the first time. Every assigned requests
// partition has a seen set: the request IDs of its recent records, each
// with the offset that first carried it. A record whose ID the set holds
// at another offset is a repeat: it is not sent to a model, but answered
// with a copy of the first answer (reanswer.go), and its offset finishes
// like any other. A record whose ID the set holds at its own offset is the
// same record again (an in-place retry, or a redelivery after a crash or
// rebalance) and is handled.
//
// Why "seen" is enough, without waiting for an answer: a repeat has the
// original's key, and the engine runs a key's records one after another in
// offset order, so when a repeat's turn comes its original has been
// handled (answered or dead-lettered). Were it only cancelled (the
// partition revoked), the repeat is dropped with it and both run again at
// the next owner, which rebuilds its set from the log.
//
// Bounds: an entry is forgotten once its record timestamp is more than the
// window older than the newest record timestamp the set has seen (record
// time, not wall time, so a backlog older than the window still dedupes
// within itself), and a partition remembers at most maxIDs, the oldest
// forgotten first.
//
// Rebuild: when a partition is assigned, its set is read back from the
// partition itself, from the first record within the window of now (or
// maxIDs records before the committed offset when the backlog is older
// than that) up to the partition's end at assignment, at most maxIDs
// records, within the rebuild timeout. The rebuild runs in the assignment
// callback, so the group's rebalance waits for it; a rebuild cut short by
// its timeout is logged and leaves the set with what it read: a repeat of
// a request it did not reach is processed again (a second model call;
// readers drop the second answer by request ID), as before this set
// existed. The rebuild also reads the records above the committed offset
// (up to the end at assignment): those finished by the previous owner are
// never handed to the handler, yet their repeats must be recognised; those
// not finished are remembered at their own offset, so they still run.

// seenEntry is one remembered request ID.
type seenEntry struct {
	id     string
	offset int64
	ts     time.Time
}

// seenSet is one partition's recently seen request IDs. It is safe for
// concurrent use: the handlers of a partition's conversations run at once.
type seenSet struct {
	window time.Duration
	maxIDs int

	mu     sync.Mutex
	ids    map[string]seenEntry // request ID → the record that first carried it
	order  []seenEntry          // in insertion order, the oldest first
	newest time.Time            // the newest record timestamp seen
}

func newSeenSet(window time.Duration, maxIDs int) *seenSet {
	return &seenSet{window: window, maxIDs: maxIDs, ids: map[string]seenEntry{}}
}

// seen reports whether id was first carried by a record at another offset
// (a repeat), and returns that record's timestamp; otherwise it remembers
// id at offset, unless it is already remembered there.
func (s *seenSet) seen(id string, offset int64, ts time.Time) (repeat bool, first time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ts.After(s.newest) {
		s.newest = ts
	}
	s.expire()
	if e, ok := s.ids[id]; ok {
		return e.offset != offset, e.ts
	}
	e := seenEntry{id: id, offset: offset, ts: ts}
	s.ids[id] = e
	s.order = append(s.order, e)
	s.expire()
	return false, time.Time{}
}

// expire forgets the entries older than the window and those beyond
// maxIDs, oldest first.
func (s *seenSet) expire() {
	cutoff := s.newest.Add(-s.window)
	n := 0
	for n < len(s.order) && (len(s.order)-n > s.maxIDs || s.order[n].ts.Before(cutoff)) {
		if e := s.order[n]; s.ids[e.id].offset == e.offset {
			delete(s.ids, e.id)
		}
		n++
	}
	if n > 0 {
		clear(s.order[:n])
		s.order = s.order[n:]
	}
}

func (s *seenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// dedupeOn reports whether repeats are skipped.
func (r *Router) dedupeOn() bool { return r.cfg.DedupeWindow > 0 }

// seenSetOf returns the seen set of rec's partition, creating it if the
// partition has none (it always has one once assigned).
func (r *Router) seenSetOf(rec *kgo.Record) *seenSet {
	tp := partitionOf{rec.Topic, rec.Partition}
	r.seenMu.Lock()
	defer r.seenMu.Unlock()
	s := r.seen[tp]
	if s == nil {
		s = newSeenSet(r.cfg.DedupeWindow, r.cfg.DedupeMaxIDs)
		r.seen[tp] = s
	}
	return s
}

// repeat reports whether rec repeats a request ID its partition has seen
// at another offset, and returns the timestamp of the record that first
// carried it.
func (r *Router) repeat(rec *kgo.Record, requestID string) (bool, time.Time) {
	if !r.dedupeOn() {
		return false, time.Time{}
	}
	return r.seenSetOf(rec).seen(requestID, rec.Offset, rec.Timestamp)
}

type partitionOf struct {
	topic     string
	partition int32
}

// assignedSeen (in the engine's OnAssigned) gives each new partition a
// seen set rebuilt from the partition's recent records.
func (r *Router) assignedSeen(ctx context.Context, assigned map[string]map[int32]int64) {
	if !r.dedupeOn() {
		return
	}
	sets := map[partitionOf]*seenSet{}
	r.seenMu.Lock()
	for topic, parts := range assigned {
		for p := range parts {
			s := newSeenSet(r.cfg.DedupeWindow, r.cfg.DedupeMaxIDs)
			r.seen[partitionOf{topic, p}] = s
			sets[partitionOf{topic, p}] = s
		}
	}
	r.seenMu.Unlock()
	r.rebuild(ctx, assigned, sets)
}

// releasedSeen (in the engine's OnReleased) drops the partitions' sets.
func (r *Router) releasedSeen(released map[string][]int32) {
	r.seenMu.Lock()
	defer r.seenMu.Unlock()
	for topic, parts := range released {
		for _, p := range parts {
			delete(r.seen, partitionOf{topic, p})
		}
	}
}

// rebuild fills sets from their partitions' records (see the comment at
// the top of this file), within DedupeRebuildTimeout.
func (r *Router) rebuild(ctx context.Context, assigned map[string]map[int32]int64, sets map[partitionOf]*seenSet) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DedupeRebuildTimeout)
	defer cancel()
	topics := make([]string, 0, len(assigned))
	for t := range assigned {
		topics = append(topics, t)
	}
	adm := kadm.NewClient(r.client)
	froms, err := adm.ListOffsetsAfterMilli(ctx, start.Add(-r.cfg.DedupeWindow).UnixMilli(), topics...)
	if err == nil {
		err = froms.Error()
	}
	var ends kadm.ListedOffsets
	if err == nil {
		ends, err = adm.ListEndOffsets(ctx, topics...)
	}
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		r.log.Warn("cannot rebuild the seen request IDs; repeats of requests before this assignment will be answered again",
			"partitions", assigned, "err", err)
		return
	}
	consume := map[string]map[int32]kgo.Offset{}
	until := map[partitionOf]int64{}
	for topic, parts := range assigned {
		for p, committed := range parts {
			from, ok1 := froms.Lookup(topic, p)
			end, ok2 := ends.Lookup(topic, p)
			if !ok1 || !ok2 {
				continue
			}
			at := from.Offset
			if committed >= 0 && at > committed {
				at = committed - int64(r.cfg.DedupeMaxIDs) // a backlog older than the window
			}
			at = max(at, end.Offset-int64(r.cfg.DedupeMaxIDs), 0)
			if at >= end.Offset {
				continue
			}
			if consume[topic] == nil {
				consume[topic] = map[int32]kgo.Offset{}
			}
			consume[topic][p] = kgo.NewOffset().At(at)
			until[partitionOf{topic, p}] = end.Offset
		}
	}
	if len(until) == 0 {
		return
	}
	cl, err := kgo.NewClient(append(r.cfg.Kafka.Opts(r.log), kgo.ConsumePartitions(consume))...)
	if err != nil {
		r.log.Warn("cannot rebuild the seen request IDs; repeats of requests before this assignment will be answered again",
			"partitions", assigned, "err", err)
		return
	}
	defer cl.Close()
	read := 0
	for len(until) > 0 && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		fetches.EachRecord(func(rec *kgo.Record) {
			tp := partitionOf{rec.Topic, rec.Partition}
			end, ok := until[tp]
			if !ok || rec.Offset >= end {
				return
			}
			read++
			if req, err := envelope.DecodeRequest(rec); err == nil {
				_, _ = sets[tp].seen(req.GetRequestId(), rec.Offset, rec.Timestamp)
			}
			if rec.Offset+1 >= end {
				delete(until, tp)
				cl.PauseFetchPartitions(map[string][]int32{tp.topic: {tp.partition}})
			}
		})
	}
	ids := 0
	for _, s := range sets {
		ids += s.len()
	}
	if len(until) > 0 {
		r.log.Warn("seen request IDs rebuilt in part: the rebuild timeout passed; repeats of requests it did not reach will be answered again",
			"records", read, "request_ids", ids, "partitions_unfinished", len(until), "took", time.Since(start))
		return
	}
	r.log.Info("seen request IDs rebuilt", "records", read, "request_ids", ids, "took", time.Since(start))
}
