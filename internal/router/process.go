package router

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/llm"
	"github.com/switchboard-llm/switchboard/internal/status"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Error result codes (dead-letter reasons are envelope's).
const (
	CodeDeadlineExceeded   = "deadline_exceeded"
	CodeBackendUnavailable = "backend_unavailable"
	// CodeCircuitOpen is the error code of an attempt that found every
	// backend of the model and its fallbacks with an open breaker.
	CodeCircuitOpen = "circuit_open"
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
	defer func() { telemetry.End(span, err) }()
	defer r.inflight.Start(status.Conversation{ID: string(rec.Key), Topic: rec.Topic, Partition: rec.Partition,
		Offset: rec.Offset, Since: time.Now()})()
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
	r.metrics.processed.WithLabelValues(laneOf(rec.Topic), envelope.ReasonTooLarge).Inc()
	if req != nil {
		out.terminal(1, &pb.Result{Body: &pb.Result_Error{Error: &pb.Error{Code: envelope.ReasonTooLarge,
			Message: "the result is larger than the results topic accepts: " + detail}}})
	}
	src := rec
	if r.maxBytes > 0 && recordSize(rec) > int(r.maxBytes)-4096 {
		trimmed := *rec
		trimmed.Value = nil
		src = &trimmed
		detail += fmt.Sprintf(" (value of %d bytes dropped: too large)", len(rec.Value))
	}
	out.deadLetterOf(src, envelope.ReasonTooLarge, detail, 0)
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

// handle is process without the too-large fallback: decode, refuse what
// cannot be called (deadline passed, unknown model), wait for the tenant's
// limits, then call the backends with retries.
func (r *Router) handle(ctx context.Context, rec *kgo.Record) error {
	lane := laneOf(rec.Topic)
	req, err := envelope.DecodeRequest(rec)
	if err != nil {
		r.log.Warn("undecodable request dead-lettered", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		r.metrics.processed.WithLabelValues(lane, "dead_letter").Inc()
		out := &emitter{r: r, ctx: ctx, rec: rec}
		out.deadLetter(envelope.ReasonDecode, err.Error(), 0)
		return out.wait()
	}
	if req.GetForgetMemory() {
		return r.forget(ctx, rec, req)
	}
	if repeat, since := r.repeat(rec, req.GetRequestId()); repeat {
		if answered, err := r.reanswer(ctx, rec, req, since); answered || err != nil {
			return err
		}
	}
	rq := &job{out: &emitter{r: r, ctx: ctx, rec: rec, req: req}, req: req, lane: lane, dispatched: time.Now()}
	if refused := r.refuse(rq); refused {
		return rq.out.wait()
	}
	if req.GetMemory() {
		if done, err := r.recall(ctx, rq); done || err != nil {
			return err
		}
	}
	callCtx := ctx
	if dl := req.GetDeadline(); dl != nil {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithDeadline(ctx, dl.AsTime())
		defer cancel()
	}
	if err := r.admitTenant(callCtx, rq); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return r.fail(rq.out, lane, CodeDeadlineExceeded, err, 1)
	}
	return r.attempts(ctx, callCtx, rq)
}

// job is one request being handled.
type job struct {
	out        *emitter
	req        *pb.Request
	lane       string
	dispatched time.Time
	chain      []string // the models to try (refuse sets it)
	estimate   int      // estimated tokens (admitTenant sets it and those below)
	tenant     *tenantLimiter
	taken      int           // tokens taken from the tenant's bucket
	memory     *recollection // a memory request's history (recall sets it)
}

// messages are what the model is sent: the request's, or with memory the
// prompt recall built.
func (rq *job) messages() []*pb.Message {
	if rq.memory != nil {
		return rq.memory.prompt
	}
	return rq.req.GetMessages()
}

// refuse answers a request that cannot be called, whose deadline passed
// before dispatch or whose model no backend serves, and reports whether it
// did. Otherwise it sets the request's chain of models.
func (r *Router) refuse(rq *job) bool {
	req, out := rq.req, rq.out
	if dl := req.GetDeadline(); dl != nil && !rq.dispatched.Before(dl.AsTime()) {
		r.metrics.processed.WithLabelValues(rq.lane, "deadline_exceeded").Inc()
		out.terminal(1, &pb.Result{Body: &pb.Result_Error{Error: &pb.Error{Code: CodeDeadlineExceeded,
			Message: fmt.Sprintf("the deadline %s passed before the request was dispatched", dl.AsTime().Format(time.RFC3339Nano))}}})
		return true
	}
	if rq.chain = r.bal.chain(req.GetModel()); rq.chain == nil {
		msg := fmt.Sprintf("no backend serves model %q", req.GetModel())
		r.metrics.processed.WithLabelValues(rq.lane, "unknown_model").Inc()
		out.terminal(1, &pb.Result{Body: &pb.Result_Error{Error: &pb.Error{Code: envelope.ReasonUnknownModel, Message: msg}}})
		out.deadLetter(envelope.ReasonUnknownModel, msg, 0)
		return true
	}
	return false
}

// admitTenant waits, within callCtx, until the tenant's buckets hold one
// request and the request's estimated tokens, and takes them.
func (r *Router) admitTenant(callCtx context.Context, rq *job) error {
	rq.estimate = estimateTokens(rq.req)
	rq.tenant = r.tenants.get(rq.req.GetTenant(), r.bal.tenantLimits().limit(rq.req.GetTenant()))
	waitStart := time.Now()
	if err := rq.tenant.wait(callCtx, rq.estimate); err != nil {
		return err
	}
	if d := time.Since(waitStart); d > time.Millisecond {
		r.metrics.limiterWait.WithLabelValues("tenant").Observe(d.Seconds())
	}
	rq.taken = rq.tenant.taken(rq.estimate)
	return nil
}

// attempts calls the backends until one answers, the error is not
// retryable, MaxAttempts is reached or callCtx (the request's deadline)
// ends, backing off between attempts; then it writes the result.
func (r *Router) attempts(ctx, callCtx context.Context, rq *job) error {
	backoff := r.cfg.RetryBackoff
	var lastErr error
	attempt := int32(1)
	for {
		rq.out.attempt = attempt
		answered, err := r.attempt(callCtx, rq, attempt)
		if answered {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		lastErr = err
		if callCtx.Err() != nil || !llm.IsRetryable(err) || attempt == int32(r.cfg.MaxAttempts) {
			break
		}
		wait := max(jitter(backoff), min(llm.RetryAfter(err), maxRetryAfter))
		if dl, ok := callCtx.Deadline(); ok && time.Now().Add(wait).After(dl) {
			// The retry could not start before the deadline.
			rq.tenant.tokens.give(rq.taken)
			return r.fail(rq.out, rq.lane, CodeDeadlineExceeded, fmt.Errorf("no retry before the deadline (next in %v): %w", wait, err), attempt)
		}
		r.log.Info("backend call failed; retrying", "request_id", rq.req.GetRequestId(), "attempt", attempt, "backoff", wait, "err", err)
		r.metrics.retries.Inc()
		select {
		case <-callCtx.Done():
		case <-time.After(wait):
		}
		if callCtx.Err() != nil {
			break
		}
		attempt++
		backoff = min(2*backoff, r.cfg.MaxRetryBackoff)
	}
	rq.tenant.tokens.give(rq.taken)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	code := CodeBackendUnavailable
	if callCtx.Err() != nil {
		code = CodeDeadlineExceeded
	}
	return r.fail(rq.out, rq.lane, code, lastErr, attempt)
}

// attempt makes one call to a backend of the chain. When the backend
// answers, it writes the final result, waits for it to be acknowledged and
// reports answered with that wait's error; otherwise it returns the call's
// (or the lease's) error.
func (r *Router) attempt(callCtx context.Context, rq *job, attempt int32) (answered bool, err error) {
	l, err := r.acquire(callCtx, rq.chain, rq.estimate)
	if err != nil {
		return false, err
	}
	start := time.Now()
	spanCtx, span := r.cfg.Kafka.Tracing.Start(callCtx, "backend call", trace.SpanKindClient,
		attribute.String("backend", l.name), attribute.String("model", rq.req.GetModel()), attribute.Int("attempt", int(attempt)))
	resp, err := r.call(spanCtx, l, rq.req, rq.messages(), rq.out, attempt)
	telemetry.End(span, err)
	used := 0
	if resp != nil {
		used = resp.Usage.TotalTokens
		if used == 0 {
			used = resp.Usage.PromptTokens + resp.Usage.CompletionTokens
		}
	}
	r.bal.release(l, err, used)
	oc := outcome(err)
	r.metrics.backendSeconds.WithLabelValues(l.name, oc).Observe(time.Since(start).Seconds())
	r.calls.Observe(l.name, time.Now(), time.Since(start), errors.Is(breakerOutcome(err), errBreakerFailure))
	r.metrics.backendCalls.WithLabelValues(l.name, oc).Inc()
	if err != nil {
		return false, err
	}
	if used > 0 {
		rq.tenant.tokens.give(rq.taken - used)
	}
	r.metrics.processed.WithLabelValues(rq.lane, "ok").Inc()
	rq.out.terminal(attempt, &pb.Result{Body: &pb.Result_Final{Final: rq.final(resp, l.name)}})
	if rq.memory != nil {
		err = r.rememberAnswer(rq, resp.Content)
	} else {
		err = rq.out.wait()
	}
	if err == nil && rq.req.GetAcceptedAt() != nil {
		r.metrics.answerSeconds.WithLabelValues(rq.lane).Observe(time.Since(rq.req.GetAcceptedAt().AsTime()).Seconds())
	}
	return true, err
}

// final is the final result of the backend's answer resp.
func (rq *job) final(resp *llm.ChatResponse, backend string) *pb.Final {
	return &pb.Final{
		Content:      resp.Content,
		FinishReason: resp.FinishReason,
		Usage: &pb.Usage{
			PromptTokens:     int32(resp.Usage.PromptTokens),
			CompletionTokens: int32(resp.Usage.CompletionTokens),
			TotalTokens:      int32(resp.Usage.TotalTokens),
		},
		Backend: backend,
		Timings: &pb.Timings{
			AcceptedAt:   rq.req.GetAcceptedAt(),
			DispatchedAt: timestamppb.New(rq.dispatched),
			FirstTokenAt: optionalTime(resp.FirstTokenAt),
			CompletedAt:  timestamppb.Now(),
		},
	}
}

// fail writes the request's error result and, unless the client's own
// deadline ended it (nothing to re-drive), a dead letter.
func (r *Router) fail(out *emitter, lane, code string, err error, attempt int32) error {
	r.metrics.processed.WithLabelValues(lane, code).Inc()
	out.terminal(attempt, &pb.Result{Body: &pb.Result_Error{Error: &pb.Error{Code: code, Message: err.Error(), Retryable: llm.IsRetryable(err)}}})
	if code != CodeDeadlineExceeded {
		out.deadLetter(envelope.ReasonBackend, err.Error(), attempt)
	}
	return out.wait()
}

// jitter returns a duration drawn uniformly from [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// estimateTokens guesses a request's tokens before the call: about four
// bytes a token for the messages, plus max_tokens (or
// DefaultCompletionEstimate when it is unset) for the answer.
func estimateTokens(req *pb.Request) int {
	n := 0
	for _, m := range req.GetMessages() {
		n += 4 + (len(m.GetContent())+3)/4
	}
	if mt := int(req.GetMaxTokens()); mt > 0 {
		return n + mt
	}
	return n + DefaultCompletionEstimate
}

// acquire waits until the balancer leases a backend of chain: while the
// backends are busy (at max concurrency, out of rate, probing, cooling
// after a Retry-After) and while the system breaker is open. When every
// backend of the chain has an open breaker but others do not, it returns
// a retryable circuit_open error at once. It also ends when ctx does.
func (r *Router) acquire(ctx context.Context, chain []string, estimate int) (*lease, error) {
	start := time.Now()
	reason := ""
	for {
		res := r.bal.pick(chain, estimate)
		if res.lease != nil {
			if reason != "" {
				r.metrics.limiterWait.WithLabelValues(reason).Observe(time.Since(start).Seconds())
			}
			return res.lease, nil
		}
		if res.open && !res.system {
			return nil, &llm.Error{Code: CodeCircuitOpen, Retryable: true,
				Message: fmt.Sprintf("every backend of %s has an open circuit breaker", strings.Join(chain, ", "))}
		}
		reason = res.reason
		t := time.NewTimer(max(time.Until(res.wake), time.Millisecond))
		woken := false
		select {
		case <-ctx.Done():
		case <-waitChan(res.waiter):
			woken = true
		case <-t.C:
		}
		t.Stop()
		if !woken && res.waiter != nil {
			r.bal.cancelWait(res.waiter)
		}
		if ctx.Err() != nil {
			if res.waiter != nil && (woken || len(res.waiter.ch) > 0) {
				r.bal.passOn(res.waiter) // the wake-up was for a slot this request will not use
			}
			r.metrics.limiterWait.WithLabelValues(reason).Observe(time.Since(start).Seconds())
			return nil, fmt.Errorf("waiting for a backend (%s): %w", reason, context.Cause(ctx))
		}
	}
}

// waitChan is w's channel, or nil (never ready) without a waiter.
func waitChan(w *waiter) <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.ch
}

// call makes one attempt at the leased backend with msgs, streaming chunk
// results through out when the request asked for a stream.
func (r *Router) call(ctx context.Context, l *lease, req *pb.Request, msgs []*pb.Message, out *emitter, attempt int32) (*llm.ChatResponse, error) {
	creq := llm.ChatRequest{Model: l.model, MaxTokens: int(req.GetMaxTokens()), Temperature: req.Temperature}
	for _, m := range msgs {
		creq.Messages = append(creq.Messages, llm.Message{Role: m.GetRole(), Content: m.GetContent()})
	}
	if !req.GetStream() {
		return l.ep.client.Complete(ctx, creq)
	}
	co := &coalescer{interval: r.cfg.ChunkInterval, size: r.cfg.ChunkBytes, flush: func(delta string) {
		out.chunk(attempt, delta)
	}}
	resp, err := l.ep.client.Stream(ctx, creq, func(delta string) error {
		co.add(delta)
		return nil
	})
	co.close()
	return resp, err
}

// coalescer groups streamed deltas into chunks. The stream's first delta
// is its own chunk at once (coalescing must not delay the time to first
// token, which a reader sees first); after it, buffered text is flushed
// once it reaches size bytes or has waited interval since its first byte
// arrived, whichever comes first, so a pause in the stream does not hold
// back text already received. flush is called with mu held: one call at a
// time, in order, and never after close returns.
type coalescer struct {
	interval time.Duration
	size     int
	flush    func(string)

	mu     sync.Mutex
	buf    strings.Builder
	timer  *time.Timer // flushes the buffer interval after its first byte
	gen    int         // counts flushes, so a stale timer does nothing
	closed bool
	first  bool // the first delta was flushed
}

func (c *coalescer) add(delta string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if delta == "" || c.closed {
		return
	}
	if !c.first {
		c.first = true
		c.buf.WriteString(delta)
		c.emit()
		return
	}
	if c.buf.Len() == 0 {
		gen := c.gen
		c.timer = time.AfterFunc(c.interval, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if gen == c.gen && !c.closed {
				c.emit()
			}
		})
	}
	c.buf.WriteString(delta)
	if c.buf.Len() >= c.size {
		c.emit()
	}
}

// emit flushes the buffer. Called with mu held.
func (c *coalescer) emit() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.buf.Len() == 0 {
		return
	}
	c.gen++
	c.flush(c.buf.String())
	c.buf.Reset()
}

// close flushes what is left; no flush happens after it returns.
func (c *coalescer) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.emit()
	c.closed = true
}

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

	runID string // this processing's Result.run_id
	// fellBack: wait answered with the too-large fallback instead of the
	// staged output.
	fellBack bool
}

func (e *emitter) produce(res *pb.Result) {
	res.RequestId = e.req.GetRequestId()
	res.ConversationId = e.req.GetConversationId()
	res.Tenant = e.req.GetTenant()
	res.Metadata = e.req.GetMetadata()
	res.WebhookUrl = e.req.GetWebhookUrl()
	if e.runID == "" { // one run ID per processing: see Result.run_id
		e.runID = uuid.NewString()
	}
	res.RunId = e.runID
	rec, err := envelope.EncodeResultAs(e.r.results, res, e.r.resEnc)
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
				e.fellBack = true
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
