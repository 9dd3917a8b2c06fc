package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/llm"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Dead-letter reasons and error result codes.
const (
	ReasonDecode           = "decode_error"
	ReasonUnknownModel     = "unknown_model"
	ReasonBackend          = "backend_error"
	ReasonTooLarge         = "result_too_large"
	CodeDeadlineExceeded   = "deadline_exceeded"
	CodeBackendUnavailable = "backend_unavailable"
)

// tooLarge reports whether a produce error can never succeed for this
// record, however often it is retried.
func tooLarge(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord)
}

// process handles one request record to completion: every result record
// (and dead letter) it writes is acknowledged by Kafka when it returns nil.
// An error means the results could not be written (or ctx ended) and the
// record must be processed again; backend failures are not errors here, they
// become error results.
func (r *Router) process(ctx context.Context, rec *kgo.Record) (err error) {
	ctx, span := r.cfg.Kafka.Tracing.Process(ctx, rec)
	defer func() { kafkaconf.End(span, err) }()
	err = r.handle(ctx, rec)
	if err == nil || !tooLarge(err) || ctx.Err() != nil {
		return err
	}
	// A result Kafka will never take: answer with a small error and
	// dead-letter the request instead of retrying forever.
	return r.tooLargeFallback(ctx, rec, err.Error())
}

// tooLargeFallback answers rec with a result_too_large error and a dead
// letter (without the request's value if even that is too large).
func (r *Router) tooLargeFallback(ctx context.Context, rec *kgo.Record, detail string) error {
	req, _ := envelope.DecodeRequest(rec)
	out := &emitter{r: r, ctx: ctx, rec: rec, req: req}
	r.metrics.processed.WithLabelValues(laneOf(rec.Topic), ReasonTooLarge).Inc()
	if req != nil {
		out.terminal(1, &pb.Result{Body: &pb.Result_Error{Error: &pb.Error{Code: ReasonTooLarge,
			Message: "the result is larger than the results topic accepts: " + detail}}})
	}
	src := rec
	if r.maxBytes > 0 && recordSize(rec) > int(r.maxBytes)-4096 {
		trimmed := *rec
		trimmed.Value = nil
		src = &trimmed
		detail += fmt.Sprintf(" (value of %d bytes dropped: too large)", len(rec.Value))
	}
	out.deadLetterOf(src, ReasonTooLarge, detail, 0)
	out.sizeChecked = true
	return out.wait()
}

func recordSize(rec *kgo.Record) int {
	n := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// handle is process without the too-large fallback.
func (r *Router) handle(ctx context.Context, rec *kgo.Record) error {
	lane := laneOf(rec.Topic)
	req, err := envelope.DecodeRequest(rec)
	if err != nil {
		r.log.Warn("undecodable request dead-lettered", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		r.metrics.processed.WithLabelValues(lane, "dead_letter").Inc()
		out := &emitter{r: r, ctx: ctx, rec: rec}
		out.deadLetter(ReasonDecode, err.Error(), 0)
		return out.wait()
	}
	out := &emitter{r: r, ctx: ctx, rec: rec, req: req}
	dispatched := time.Now()

	if dl := req.GetDeadline(); dl != nil && !dispatched.Before(dl.AsTime()) {
		r.metrics.processed.WithLabelValues(lane, "deadline_exceeded").Inc()
		out.terminal(1, &pb.Result{Body: &pb.Result_Error{Error: &pb.Error{Code: CodeDeadlineExceeded,
			Message: fmt.Sprintf("the deadline %s passed before the request was dispatched", dl.AsTime().Format(time.RFC3339Nano))}}})
		return out.wait()
	}

	backend := r.models[req.GetModel()]
	if backend == nil {
		msg := fmt.Sprintf("no backend serves model %q", req.GetModel())
		r.metrics.processed.WithLabelValues(lane, "unknown_model").Inc()
		out.terminal(1, &pb.Result{Body: &pb.Result_Error{Error: &pb.Error{Code: ReasonUnknownModel, Message: msg}}})
		out.deadLetter(ReasonUnknownModel, msg, 0)
		return out.wait()
	}

	callCtx := ctx
	if dl := req.GetDeadline(); dl != nil {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithDeadline(ctx, dl.AsTime())
		defer cancel()
	}
	backoff := r.cfg.RetryBackoff
	var lastErr error
	for attempt := int32(1); attempt <= int32(r.cfg.MaxAttempts); attempt++ {
		start := time.Now()
		spanCtx, span := r.cfg.Kafka.Tracing.Start(callCtx, "backend call", trace.SpanKindClient,
			attribute.String("backend", backend.name), attribute.String("model", req.GetModel()), attribute.Int("attempt", int(attempt)))
		resp, err := r.call(spanCtx, backend, req, out, attempt)
		kafkaconf.End(span, err)
		r.metrics.backendSeconds.WithLabelValues(backend.name, outcome(err)).Observe(time.Since(start).Seconds())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			r.metrics.processed.WithLabelValues(lane, "ok").Inc()
			out.terminal(attempt, &pb.Result{Body: &pb.Result_Final{Final: &pb.Final{
				Content:      resp.Content,
				FinishReason: resp.FinishReason,
				Usage: &pb.Usage{
					PromptTokens:     int32(resp.Usage.PromptTokens),
					CompletionTokens: int32(resp.Usage.CompletionTokens),
					TotalTokens:      int32(resp.Usage.TotalTokens),
				},
				Backend: backend.name,
				Timings: &pb.Timings{
					AcceptedAt:   req.GetAcceptedAt(),
					DispatchedAt: timestamppb.New(dispatched),
					FirstTokenAt: optionalTime(resp.FirstTokenAt),
					CompletedAt:  timestamppb.Now(),
				},
			}}})
			err := out.wait()
			if err == nil && req.GetAcceptedAt() != nil {
				r.metrics.answerSeconds.WithLabelValues(lane).Observe(time.Since(req.GetAcceptedAt().AsTime()).Seconds())
			}
			return err
		}
		lastErr = err
		if callCtx.Err() != nil || !llm.IsRetryable(err) || attempt == int32(r.cfg.MaxAttempts) {
			break
		}
		wait := max(backoff, llm.RetryAfter(err))
		r.log.Info("backend call failed; retrying", "request_id", req.GetRequestId(), "attempt", attempt, "backoff", wait, "err", err)
		select {
		case <-callCtx.Done():
		case <-time.After(wait):
		}
		backoff *= 2
	}

	code, reason := CodeBackendUnavailable, ReasonBackend
	if callCtx.Err() != nil && ctx.Err() == nil {
		code = CodeDeadlineExceeded
	}
	r.metrics.processed.WithLabelValues(lane, code).Inc()
	out.terminal(out.attempt, &pb.Result{Body: &pb.Result_Error{Error: &pb.Error{Code: code, Message: lastErr.Error(), Retryable: llm.IsRetryable(lastErr)}}})
	if code != CodeDeadlineExceeded { // the client's own deadline: nothing to re-drive
		out.deadLetter(reason, lastErr.Error(), out.attempt)
	}
	return out.wait()
}

// call makes one attempt at the backend, streaming chunk results through
// out when the request asked for a stream.
func (r *Router) call(ctx context.Context, b *backendClient, req *pb.Request, out *emitter, attempt int32) (*llm.ChatResponse, error) {
	creq := llm.ChatRequest{Model: req.GetModel(), MaxTokens: int(req.GetMaxTokens()), Temperature: req.Temperature}
	for _, m := range req.GetMessages() {
		creq.Messages = append(creq.Messages, llm.Message{Role: m.GetRole(), Content: m.GetContent()})
	}
	out.attempt = attempt
	if !req.GetStream() {
		return b.client.Complete(ctx, creq)
	}
	co := coalescer{interval: r.cfg.ChunkInterval, size: r.cfg.ChunkBytes, flush: func(delta string) {
		out.chunk(attempt, delta)
	}}
	resp, err := b.client.Stream(ctx, creq, func(delta string) error {
		co.add(delta)
		return nil
	})
	co.close()
	return resp, err
}

// coalescer groups streamed deltas into chunks of about interval or size.
type coalescer struct {
	interval time.Duration
	size     int
	flush    func(string)
	buf      strings.Builder
	last     time.Time
}

func (c *coalescer) add(delta string) {
	if c.last.IsZero() {
		c.last = time.Now()
	}
	c.buf.WriteString(delta)
	if c.buf.Len() >= c.size || time.Since(c.last) >= c.interval {
		c.emit()
	}
}

func (c *coalescer) emit() {
	if c.buf.Len() == 0 {
		return
	}
	c.flush(c.buf.String())
	c.buf.Reset()
	c.last = time.Now()
}

func (c *coalescer) close() { c.emit() }

// emitter writes one request's output records, in order, and collects the
// producer's acknowledgements. In exactly-once mode it keeps the terminal
// result and dead letters and stages them with the engine in wait (chunks
// are still produced at once: a stream cannot wait for a transaction).
type emitter struct {
	r      *Router
	ctx    context.Context
	rec    *kgo.Record // the request record
	req    *pb.Request // nil if rec could not be decoded
	staged []*kgo.Record
	// sizeChecked: staged records are known to fit (the too-large
	// fallback built them).
	sizeChecked bool
	attempt     int32
	index       int32 // next chunk index of the current attempt
	indexOf     int32 // the attempt index counts for
	wg          sync.WaitGroup
	mu          sync.Mutex
	err         error
}

func (e *emitter) produce(res *pb.Result) {
	res.RequestId = e.req.GetRequestId()
	res.ConversationId = e.req.GetConversationId()
	res.Tenant = e.req.GetTenant()
	res.Metadata = e.req.GetMetadata()
	rec, err := envelope.EncodeResult(e.r.results, res)
	if err != nil {
		e.fail(err)
		return
	}
	if e.r.eos && res.GetChunk() == nil {
		e.staged = append(e.staged, rec)
		return
	}
	e.send(rec)
}

// send produces rec now (chunks always; everything outside exactly-once).
func (e *emitter) send(rec *kgo.Record) {
	e.wg.Add(1)
	e.r.producer.Produce(e.ctx, rec, func(_ *kgo.Record, err error) {
		defer e.wg.Done()
		if err != nil {
			e.fail(err)
		}
	})
}

func (e *emitter) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = err
	}
}

func (e *emitter) chunk(attempt int32, delta string) {
	if e.indexOf != attempt {
		e.indexOf, e.index = attempt, 0
	}
	e.produce(&pb.Result{Attempt: attempt, Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: e.index, Delta: delta}}})
	e.index++
}

// terminal writes the request's one terminal result: res holds its body.
func (e *emitter) terminal(attempt int32, res *pb.Result) {
	res.Attempt = max(attempt, 1)
	e.produce(res)
}

// deadLetter writes the request record to the dead-letter topic with why.
func (e *emitter) deadLetter(reason, detail string, attempts int32) {
	e.deadLetterOf(e.rec, reason, detail, attempts)
}

func (e *emitter) deadLetterOf(src *kgo.Record, reason, detail string, attempts int32) {
	dl, err := envelope.DeadLetter(e.r.dlq, src, reason, detail, e.req.GetRequestId(), attempts)
	if err != nil {
		e.fail(err)
		return
	}
	e.r.metrics.deadLetters.WithLabelValues(reason).Inc()
	if e.r.eos {
		e.staged = append(e.staged, dl)
		return
	}
	e.send(dl)
}

// wait blocks until every record produced so far is acknowledged and
// returns the first failure. In exactly-once mode it then stages the kept
// records with the engine, which commits them with the request's offset.
func (e *emitter) wait() error {
	e.wg.Wait()
	e.mu.Lock()
	err := e.err
	e.mu.Unlock()
	if err != nil {
		return fmt.Errorf("produce results: %w", err)
	}
	if !e.r.eos || len(e.staged) == 0 {
		return nil
	}
	if !e.sizeChecked && e.r.maxBytes > 0 {
		for _, rec := range e.staged {
			if recordSize(rec) > int(e.r.maxBytes)-512 {
				// It would fail the whole transaction, again and again.
				return e.r.tooLargeFallback(e.ctx, e.rec, fmt.Sprintf("a %d-byte output record", recordSize(rec)))
			}
		}
	}
	return e.r.engine.Stage(e.rec, e.staged...)
}

func laneOf(topic string) string {
	switch {
	case strings.HasSuffix(topic, "."+envelope.LaneBatch):
		return envelope.LaneBatch
	case strings.HasSuffix(topic, "."+envelope.LaneInteractive):
		return envelope.LaneInteractive
	default:
		return "unknown"
	}
}

func outcome(err error) string {
	var le *llm.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &le) && le.StatusCode > 0:
		return fmt.Sprintf("http_%d", le.StatusCode)
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	default:
		return "error"
	}
}

func optionalTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
