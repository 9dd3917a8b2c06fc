package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Re-answering a repeat. A repeat (dedupe.go) is not sent to a model, but
// a caller may be waiting for its answer: the OpenAI-compatible API of
// another ingress instance waits, on the call that produced the repeat,
// for results written after it started. So the repeat gets a copy of its
// original's terminal result (same run_id: one processing, written
// twice; readers drop the second by request ID as they drop a rerun's),
// found in the conversation's results partition from reanswerMargin
// before the original's record timestamp. At least once, the original's
// terminal result is in Kafka before the repeat's turn (its handler
// returned only once Kafka acknowledged it). With --exactly-once it may
// still wait for its transaction; a terminal result that cannot be found
// (that, a failed or timed-out read, or a retention that dropped it) is
// never invented: the repeat is then processed like any request, with a
// model call, as before repeats were recognised.

// reanswerMargin is how long before the original request's record
// timestamp the search for its answer starts, for clocks that disagree
// between the ingress and router hosts.
const reanswerMargin = time.Minute

// reanswer answers the repeat rec (of req) with a copy of its original's
// terminal result. answered false (and no error) means the original's
// answer was not found and the repeat must be processed.
func (r *Router) reanswer(ctx context.Context, rec *kgo.Record, req *pb.Request, since time.Time) (answered bool, err error) {
	lctx, cancel := context.WithTimeout(ctx, r.cfg.DedupeRebuildTimeout)
	orig, err := r.original(lctx, req, since)
	cancel()
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if orig == nil {
		r.log.Info("repeated request processed again: its first answer was not found", "request_id", req.GetRequestId(),
			"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return false, nil
	}
	out := &emitter{r: r, ctx: ctx, rec: rec, req: req, runID: orig.GetRunId()}
	out.produce(orig)
	if err := out.wait(); err != nil {
		return true, err
	}
	r.metrics.duplicates.WithLabelValues(laneOf(rec.Topic)).Inc()
	r.log.Info("repeated request answered with its first answer, without a model call", "request_id", req.GetRequestId(),
		"topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "conversation_id", req.GetConversationId())
	return true, nil
}

// errNoAnswer: the search reached the partition's end without the
// original's terminal result.
var errNoAnswer = errors.New("no terminal result with this request ID")

// original finds req's terminal result in its conversation's results
// partition, from reanswerMargin before since up to the partition's end
// when the search starts.
func (r *Router) original(ctx context.Context, req *pb.Request, since time.Time) (*pb.Result, error) {
	adm := kadm.NewClient(r.client)
	ends, err := adm.ListEndOffsets(ctx, r.results)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets: %w", err)
	}
	p := envelope.Partition(req.GetConversationId(), len(ends[r.results]))
	end, ok := ends.Lookup(r.results, p)
	if !ok {
		return nil, fmt.Errorf("end offset of partition %d: not listed", p)
	}
	starts, err := adm.ListOffsetsAfterMilli(ctx, since.Add(-reanswerMargin).UnixMilli(), r.results)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets: %w", err)
	}
	from, ok := starts.Lookup(r.results, p)
	if !ok || from.Offset >= end.Offset {
		return nil, errNoAnswer
	}
	cl, err := kgo.NewClient(append(r.cfg.Kafka.Opts(r.log),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.results: {p: kgo.NewOffset().At(from.Offset)}}))...)
	if err != nil {
		return nil, fmt.Errorf("results reader: %w", err)
	}
	defer cl.Close()
	for ctx.Err() == nil {
		var found *pb.Result
		done := false
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			if found != nil || done || rec.Offset >= end.Offset {
				done = true
				return
			}
			if envelope.Header(rec, envelope.HeaderRequestID) == req.GetRequestId() {
				if res, err := envelope.DecodeResult(rec); err == nil && res.GetChunk() == nil {
					found = res
				}
			}
			done = rec.Offset+1 >= end.Offset
		})
		if found != nil {
			return found, nil
		}
		if done {
			return nil, errNoAnswer
		}
	}
	return nil, ctx.Err()
}
