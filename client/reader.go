package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// Offset is where a Reader starts in its conversation's partition of the
// results topic. The zero Offset is AtEnd.
type Offset struct {
	kind int // 0 end, 1 start, 2 at, 3 time
	at   int64
	t    time.Time
}

// AtEnd starts after the last result written when Results is called: a
// reader opened before Send sees every result of that request.
func AtEnd() Offset { return Offset{} }

// AtStart starts at the oldest result the topic still holds.
func AtStart() Offset { return Offset{kind: 1} }

// At starts at offset o of the conversation's partition; a reader that
// handled a Result resumes after it from At(result.Offset+1). An offset
// the partition does not hold (deleted by retention, or past its end)
// starts at the oldest record it still holds.
func At(o int64) Offset { return Offset{kind: 2, at: o} }

// AtTime starts at the first result written at or after t (the end if
// there is none).
func AtTime(t time.Time) Offset { return Offset{kind: 3, t: t} }

// ReadOptions shape a Reader.
type ReadOptions struct {
	// From is where reading starts. Default AtEnd.
	From Offset
	// RequestID, when set, keeps only that request's results.
	RequestID string
	// KeepDuplicates yields repeated results too. By default a Reader
	// drops, as docs/RECORDS.md says, a chunk it yielded before (same
	// request, run, attempt and index) and any terminal result of a
	// request after its first (a request processed again after a worker
	// crash, or a repeat answered with a copy).
	KeepDuplicates bool
	// ReadCommitted reads only committed transactions (for
	// router-worker's --exactly-once: terminal results then appear once
	// committed; streamed chunks are not transactional).
	ReadCommitted bool
}

// ErrClosed is returned by Next once the Reader is closed.
var ErrClosed = errors.New("client: reader closed")

// Reader yields one conversation's results in order. It reads the one
// partition of the results topic that holds the conversation (murmur2 of
// the conversation ID over the partition count when it was opened) and
// skips other conversations' records.
type Reader struct {
	kc        *kgo.Client
	conv      string
	topic     string
	partition int32
	requestID string
	dedupe    *seen
	pending   []*kgo.Record
}

// Results opens a reader of conversationID's results. It looks up the
// results topic's partitions (and, for AtEnd, AtStart and AtTime, the
// offset) before it returns, so a request sent after Results returns is
// answered after the reader's start. Close it when done.
func (c *Client) Results(ctx context.Context, conversationID string, opts ReadOptions) (*Reader, error) {
	if !envelope.ValidConversationID(conversationID) {
		return nil, fmt.Errorf("client: %w: conversation ID %q", ErrInvalidRequest, conversationID)
	}
	adm := c.admin()
	ends, err := adm.ListEndOffsets(ctx, c.results)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("client: end offsets of %s: %w", c.results, err)
	}
	n := len(ends[c.results])
	if n == 0 {
		return nil, fmt.Errorf("client: topic %s has no partitions (does it exist?)", c.results)
	}
	p := envelope.Partition(conversationID, n)
	var start kgo.Offset
	switch opts.From.kind {
	case 0:
		end, _ := ends.Lookup(c.results, p)
		start = kgo.NewOffset().At(end.Offset)
	case 1:
		start = kgo.NewOffset().AtStart()
	case 2:
		if opts.From.at < 0 {
			return nil, fmt.Errorf("client: offset %d: want 0 or more (AtStart and AtEnd name the ends)", opts.From.at)
		}
		start = kgo.NewOffset().At(opts.From.at)
	case 3:
		listed, err := adm.ListOffsetsAfterMilli(ctx, opts.From.t.UnixMilli(), c.results)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("client: offsets of %s after %s: %w", c.results, opts.From.t, err)
		}
		o, _ := listed.Lookup(c.results, p)
		start = kgo.NewOffset().At(o.Offset)
	}
	kopts := slices.Concat(c.cfg.Kafka, []kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.results: {p: start}}),
		// An offset out of range (deleted by retention, or not yet
		// written) starts at the oldest retained record.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	})
	if opts.ReadCommitted {
		kopts = append(kopts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	kc, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("client: results reader: %w", err)
	}
	r := &Reader{kc: kc, conv: conversationID, topic: c.results, partition: p, requestID: opts.RequestID}
	if !opts.KeepDuplicates {
		r.dedupe = newSeen(maxRemembered)
	}
	return r, nil
}

// Partition is the results partition the reader follows.
func (r *Reader) Partition() int32 { return r.partition }

// Next returns the conversation's next result, waiting for it until ctx
// ends. A record that cannot be decoded is returned as a *DecodeError
// (errors.Is(err, ErrDecode)); the reader has moved past it and the next
// call goes on. After Close, Next returns ErrClosed.
func (r *Reader) Next(ctx context.Context) (Result, error) {
	for {
		for len(r.pending) > 0 {
			rec := r.pending[0]
			r.pending[0] = nil
			r.pending = r.pending[1:]
			if string(rec.Key) != r.conv {
				continue
			}
			// The request-id header tells another request's record
			// without decoding it; one without the header is decoded.
			if id := envelope.Header(rec, envelope.HeaderRequestID); r.requestID != "" && id != "" && id != r.requestID {
				continue
			}
			res, err := DecodeResult(rec)
			if err != nil {
				return Result{}, err
			}
			if r.requestID != "" && res.RequestID != r.requestID {
				continue
			}
			if r.dedupe != nil && r.dedupe.repeat(&res) {
				continue
			}
			return res, nil
		}
		fetches := r.kc.PollFetches(ctx)
		if fetches.IsClientClosed() {
			return Result{}, ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		var ferr error
		fetches.EachError(func(topic string, partition int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				ferr = fmt.Errorf("client: read %s/%d: %w", topic, partition, err)
			}
		})
		r.pending = fetches.Records()
		if ferr != nil && len(r.pending) == 0 {
			return Result{}, ferr
		}
	}
}

// Close stops the reader and closes its connections.
func (r *Reader) Close() { r.kc.Close() }

// maxRemembered bounds the requests a Reader remembers to drop repeats.
const maxRemembered = 4096

// seen remembers, for the last requests, what a reader yielded: the chunk
// keys of an unfinished request, and which requests ended.
type seen struct {
	max   int
	order []string // request IDs, oldest first
	reqs  map[string]*seenRequest
}

type seenRequest struct {
	done   bool
	chunks map[chunkKey]struct{}
}

type chunkKey struct {
	run          string
	attempt, idx int32
}

func newSeen(n int) *seen { return &seen{max: n, reqs: map[string]*seenRequest{}} }

// repeat reports whether res repeats what was yielded, and remembers it.
func (s *seen) repeat(res *Result) bool {
	q := s.reqs[res.RequestID]
	if q == nil {
		q = &seenRequest{chunks: map[chunkKey]struct{}{}}
		s.reqs[res.RequestID] = q
		s.order = append(s.order, res.RequestID)
		if len(s.order) > s.max {
			delete(s.reqs, s.order[0])
			s.order = s.order[1:]
		}
	}
	if q.done {
		return true // the request ended: anything later is a repeat
	}
	if res.Terminal() {
		q.done, q.chunks = true, nil
		return false
	}
	k := chunkKey{run: res.RunID, attempt: res.Attempt, idx: res.Chunk.Index}
	if _, ok := q.chunks[k]; ok {
		return true
	}
	q.chunks[k] = struct{}{}
	return false
}
