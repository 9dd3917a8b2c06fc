package ingress

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// fieldModel is the model field (and parameter) of a request.
const fieldModel = "model"

// MaxTimeoutMS bounds a request's timeout_ms: a day.
const MaxTimeoutMS = 24 * 60 * 60 * 1000

// submission is one request as a protocol adapter (HTTP, WebSocket, gRPC)
// hands it over: authenticated, decoded, not yet validated. Every protocol
// goes through submit, so every request meets the same checks and becomes
// the same record.
type submission struct {
	protocol       string // "http", "ws", "grpc", "openai": a metric label
	tenant         *tenant.Tenant
	conversationID string
	idempotencyKey string
	derivedKey     bool // idempotencyKey was derived by ingress (a batch's key and an index), not given
	// requestID, when set, is the request's ID (it must be what
	// RequestIDForKey gives when idempotencyKey is set): the OpenAI
	// adapter waits for the answer under it before the record exists.
	requestID string
	body      messageBody
}

// failure is a rejected submission. Adapters turn it into their protocol's
// error: an HTTP status and JSON body, a WebSocket error frame, a gRPC
// status.
type failure struct {
	status     int // the HTTP status
	code       string
	message    string
	field      string
	retryAfter time.Duration // > 0: a retry after this long may succeed
}

func (f *failure) apiError() apiError {
	return apiError{Code: f.code, Message: f.message, Field: f.field}
}

// retryAfterSeconds is the Retry-After value: whole seconds, at least 1.
func (f *failure) retryAfterSeconds() string {
	return strconv.Itoa(max(1, int((f.retryAfter+time.Second-1)/time.Second)))
}

func badRequest(field, format string, args ...any) *failure {
	return &failure{status: http.StatusBadRequest, code: "invalid_request", field: field, message: fmt.Sprintf(format, args...)}
}

// RequestIDForKey returns the request ID of a request sent by tenant with
// an Idempotency-Key: envelope.RequestIDForKey, the same on every ingress
// instance and for direct producers, so a repeat that reaches another
// instance produces a record with the same request_id and readers drop it
// as a duplicate.
func RequestIDForKey(tenantName, key string) string {
	return envelope.RequestIDForKey(tenantName, key)
}

// MaxIdempotencyKeyLen bounds an Idempotency-Key.
const MaxIdempotencyKeyLen = envelope.MaxIdempotencyKeyLen

func validIdempotencyKey(k string) bool { return envelope.ValidIdempotencyKey(k) }

// buildRequest validates s and turns it into the record's Request.
func (in *Ingress) buildRequest(s *submission, now time.Time) (*pb.Request, *failure) {
	if !envelope.ValidConversationID(s.conversationID) {
		return nil, badRequest("conversation_id", "conversation_id must be 1 to %d characters of letters, digits and ._:-", envelope.MaxConversationIDLen)
	}
	if !s.derivedKey && !validIdempotencyKey(s.idempotencyKey) {
		return nil, badRequest("idempotency_key", "must be at most %d printable ASCII characters without spaces", MaxIdempotencyKeyLen)
	}
	b := &s.body
	if b.Lane == "" {
		b.Lane = envelope.LaneInteractive
	}
	if b.TimeoutMS < 0 || b.TimeoutMS > MaxTimeoutMS {
		return nil, badRequest("timeout_ms", "must be between 0 and %d (24 hours)", MaxTimeoutMS)
	}
	req := &pb.Request{
		ConversationId: s.conversationID,
		Tenant:         s.tenant.Name,
		Lane:           b.Lane,
		Model:          b.Model,
		Stream:         b.Stream,
		MaxTokens:      b.MaxTokens,
		Temperature:    b.Temperature,
		Metadata:       b.Metadata,
		WebhookUrl:     b.WebhookURL,
		AcceptedAt:     timestamppb.New(now),
		Memory:         s.memory(),
	}
	switch {
	case s.requestID != "":
		req.RequestId = s.requestID
	case s.idempotencyKey != "":
		req.RequestId = RequestIDForKey(s.tenant.Name, s.idempotencyKey)
	default:
		req.RequestId = uuid.Must(uuid.NewV7()).String()
	}
	if b.TimeoutMS > 0 {
		req.Deadline = timestamppb.New(now.Add(time.Duration(b.TimeoutMS) * time.Millisecond))
	}
	req.Messages = make([]*pb.Message, 0, len(b.Messages))
	for _, m := range b.Messages {
		req.Messages = append(req.Messages, &pb.Message{Role: m.Role, Content: m.Content})
	}
	if err := envelope.Validate(req); err != nil {
		f := &failure{status: http.StatusBadRequest, code: "invalid_request", message: err.Error()}
		var fe *envelope.FieldError
		if errors.As(err, &fe) {
			f.field = fe.Field
		}
		return nil, f
	}
	if !in.models.Allows(req.Model) {
		return nil, &failure{status: http.StatusBadRequest, code: "unknown_model", field: fieldModel,
			message: fmt.Sprintf("no backend serves model %q", req.Model)}
	}
	if f := in.checkWebhook(s.tenant, req.GetWebhookUrl()); f != nil {
		return nil, f
	}
	if !s.tenant.AllowsModel(req.Model) {
		return nil, &failure{status: http.StatusForbidden, code: "model_not_allowed", field: fieldModel,
			message: fmt.Sprintf("tenant %q may not use model %q", s.tenant.Name, req.Model)}
	}
	if !s.tenant.AllowsLane(req.Lane) {
		return nil, &failure{status: http.StatusForbidden, code: "lane_not_allowed", field: "lane",
			message: fmt.Sprintf("tenant %q may not use lane %q", s.tenant.Name, req.Lane)}
	}
	return req, nil
}

// reject counts a failure that stopped a request before submit (auth, body,
// frame), as submit counts its own.
func (in *Ingress) reject(protocol string, f *failure) {
	in.metrics.rejected.WithLabelValues(f.code).Inc()
	in.metrics.requests.WithLabelValues(protocol, "unknown", strconv.Itoa(f.status)).Inc()
}

// submit runs every check on s, produces its record and returns the ack
// once the broker has acknowledged the record. It never returns an ack for
// a record the broker did not acknowledge.
func (in *Ingress) submit(ctx context.Context, s submission) (ack, *failure) {
	return in.begin(ctx, s).wait()
}

// pending is a submission that begin has checked and handed to the
// producer, or already decided (refused, or a repeat answered with the
// first ack). wait returns its outcome; it must be called exactly once.
type pending struct {
	in       *Ingress
	protocol string
	lane     string
	start    time.Time

	// decided outcome (when prod is nil)
	ack ack
	f   *failure

	prod    *production // the record in the producer, if it got there
	owner   *idemEntry  // the Idempotency-Key entry this submission owns
	ownKey  idemKey
	release bool // holds a slot of in.inFlight
	// hidePositions: the tenant is not shown Kafka positions in acks.
	hidePositions bool
}

// production is a record handed to the producer: done receives the
// broker's answer.
type production struct {
	req    *pb.Request
	rec    *kgo.Record
	done   chan error
	lost   <-chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
}

// begin runs every check on s and hands its record to the producer without
// waiting for the broker; wait gives the outcome. Records handed over by
// successive begin calls of one goroutine are stored in that order within
// their partition (franz-go keeps a partition's records in the order they
// were produced, and its idempotent producer keeps that order across
// retries), so an adapter that takes several messages in one call calls
// begin for each, in order, and waits afterwards: a conversation's messages
// land in the order they were given.
//
// Order of the checks: validation and permissions (400, 403),
// Idempotency-Key (a repeat returns the first ack and costs nothing; the
// same key with another request is 422), lag admission (429/503), the
// tenant's token buckets (429), the global concurrency limit (503), broker
// reachability (503), produce. begin blocks only while a first request with
// the same Idempotency-Key is in flight, or while the producer's buffer is
// full.
func (in *Ingress) begin(ctx context.Context, s submission) *pending {
	p := &pending{in: in, protocol: s.protocol, lane: s.body.Lane, start: time.Now(),
		hidePositions: !s.tenant.Shows(tenant.ShowKafkaPositions)}
	req, f := in.buildRequest(&s, p.start)
	if f != nil {
		p.f = f
		return p
	}
	p.lane = req.Lane
	if s.idempotencyKey == "" {
		p.admitAndProduce(ctx, s.tenant, req)
		return p
	}
	key := idemKey{tenant: s.tenant.Name, key: s.idempotencyKey}
	e, owner, f := in.idem.claim(ctx, key, s.digest())
	switch {
	case f != nil:
		p.f = f
	case owner:
		p.owner, p.ownKey = e, key
		p.admitAndProduce(ctx, s.tenant, req)
	default:
		in.metrics.idempotentReplays.Inc()
		p.ack = e.ack
	}
	return p
}

// admitAndProduce applies the load-dependent checks, then hands req's
// record to the producer.
func (p *pending) admitAndProduce(ctx context.Context, t *tenant.Tenant, req *pb.Request) {
	in := p.in
	if p.f = in.admission.check(req.Lane); p.f != nil {
		return
	}
	if p.f = in.limits.take(t, estimateTokens(req)); p.f != nil {
		return
	}
	if !in.inFlight.tryAcquire() {
		p.f = &failure{status: http.StatusServiceUnavailable, code: "overloaded", retryAfter: time.Second,
			message: fmt.Sprintf("ingress is handling its limit of %d requests at once", in.cfg.MaxInFlight)}
		return
	}
	p.release = true
	p.prod, p.f = in.produce(ctx, req)
}

// failed reports whether begin already refused the submission.
func (p *pending) failed() bool { return p.prod == nil && p.f != nil }

// wait returns the submission's ack once the broker has acknowledged its
// record, or why it was not accepted, and counts the outcome.
func (p *pending) wait() (a ack, f *failure) {
	in := p.in
	a, f = p.ack, p.f
	if p.prod != nil {
		a, f = in.awaitProduce(p.prod)
	}
	if p.release {
		in.inFlight.release()
	}
	if p.owner != nil {
		in.idem.finish(p.ownKey, p.owner, a, f == nil)
	}
	a.hidePositions = p.hidePositions
	status := http.StatusAccepted
	if f != nil {
		status = f.status
		in.metrics.rejected.WithLabelValues(f.code).Inc()
	}
	lane := p.lane
	if lane != envelope.LaneInteractive && lane != envelope.LaneBatch {
		lane = "unknown"
	}
	in.metrics.requests.WithLabelValues(p.protocol, lane, strconv.Itoa(status)).Inc()
	in.metrics.latency.WithLabelValues(p.protocol, lane).Observe(time.Since(p.start).Seconds())
	return a, f
}

func unavailable(why string) *failure {
	return &failure{status: http.StatusServiceUnavailable, code: "unavailable", retryAfter: time.Second, message: why}
}

// produce hands req's record to the producer; awaitProduce waits for the
// broker's acknowledgement, at most ProduceTimeout, and no longer than it
// takes the health prober to see the brokers gone.
func (in *Ingress) produce(ctx context.Context, req *pb.Request) (*production, *failure) {
	lost, up := in.health.watch()
	if !up {
		return nil, unavailable("Kafka is unreachable; the request was not accepted")
	}
	rec, err := envelope.EncodeRequest(in.topics[req.Lane], req)
	if err != nil {
		return nil, &failure{status: http.StatusInternalServerError, code: "internal", message: err.Error()}
	}
	pr := &production{req: req, rec: rec, done: make(chan error, 1), lost: lost}
	pr.ctx, pr.cancel = context.WithTimeout(ctx, in.cfg.ProduceTimeout)
	in.client.Produce(pr.ctx, rec, func(_ *kgo.Record, err error) { //nolint:contextcheck // pr.ctx is derived from ctx (WithTimeout above)
		if err == nil {
			in.health.acked(time.Now())
		}
		pr.done <- err
	})
	return pr, nil
}

func (in *Ingress) awaitProduce(pr *production) (ack, *failure) {
	defer pr.cancel()
	var err error
	select {
	case err = <-pr.done:
	case <-pr.lost:
		return ack{}, unavailable("Kafka became unreachable before it acknowledged the request; it was not accepted, " +
			"though it may still be stored: retry with the same Idempotency-Key to be answered once")
	case <-pr.ctx.Done():
		err = pr.ctx.Err()
	}
	req, rec := pr.req, pr.rec
	if err != nil {
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
			return ack{}, &failure{status: http.StatusRequestEntityTooLarge, code: "body_too_large", message: "the request is larger than its topic accepts"}
		}
		in.log.Warn("produce failed", "conversation_id", req.GetConversationId(), "request_id", req.GetRequestId(), "err", err)
		return ack{}, unavailable("Kafka did not acknowledge the request in time; it was not accepted, though it may still " +
			"be stored: retry with the same Idempotency-Key to be answered once")
	}
	return ack{
		RequestID:      req.GetRequestId(),
		ConversationID: req.GetConversationId(),
		Lane:           req.GetLane(),
		Partition:      rec.Partition,
		Offset:         rec.Offset,
		acceptedAt:     req.GetAcceptedAt().AsTime(),
	}, nil
}

// DefaultCompletionTokens is the completion's share of a request's token
// estimate when max_tokens is unset. The estimate, for the tenant's token
// bucket: about four bytes per token of prompt, four tokens of overhead
// per message, plus the completion's max_tokens.
const DefaultCompletionTokens = 256

func estimateTokens(req *pb.Request) int {
	n := 0
	for _, m := range req.GetMessages() {
		n += 4 + (len(m.GetContent())+3)/4
	}
	if mt := req.GetMaxTokens(); mt > 0 {
		n += int(mt)
	} else {
		n += DefaultCompletionTokens
	}
	return n
}

// digest identifies the request a submission asks for (its conversation
// and body, with the lane's default applied), so that a repeat with the
// same Idempotency-Key can be told from another request under that key.
// encoding/json writes struct fields in order and map keys sorted, so
// equal requests have equal digests.
func (s *submission) digest() [sha256.Size]byte {
	b := s.body
	if b.Lane == "" {
		b.Lane = envelope.LaneInteractive
	}
	j, _ := json.Marshal(b) // a messageBody always marshals
	h := sha256.New()
	h.Write([]byte(s.conversationID))
	h.Write([]byte{0})
	h.Write(j)
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}
