package egress

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// End reasons, sent to the client as the stream's last event.
const (
	endOverflow     = "overflow"      // the client read too slowly; resume from the cursor
	endShutdown     = "shutdown"      // this egress instance is stopping; resume elsewhere
	endReplayFailed = "replay_failed" // Kafka did not answer the replay in time
	endDone         = "done"          // the request named by request_id finished
	endRevoked      = "revoked"       // a tenants reload revoked the stream's API key
)

// maxRequestIDLen bounds the request_id a stream may wait for.
const maxRequestIDLen = 256

// subRequest is what a client asks for, whatever the transport.
type subRequest struct {
	tenant string     // the caller's tenant; "" when egress runs without API keys
	cred   credential // how the caller authenticated, checked again when the tenants are reloaded
	conv   string
	from   string // cursor text; "" replays the window
	until  string // request ID whose terminal result ends the stream
}

// apiError is a refusal before the stream starts.
type apiError struct {
	status     int // HTTP status; the transports map it
	code       string
	msg        string
	retryAfter bool
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

// sink writes one transport's events. Its methods are called from one
// goroutine, the stream's.
type sink interface {
	// event writes ev's answer as view v shows it, with the cursor token
	// cur; name is chunk, result or error.
	event(cur string, name string, ev event, v view) error
	// restart tells the client that a request's answer starts over.
	restart(r *pb.Restart) error
	// end writes the stream's last event: why it ends and the cursor token
	// to resume from.
	end(reason string, cur string) error
	// keepAlive tells the client the stream is still open.
	keepAlive(ctx context.Context) error
}

// session is one subscription being served: where it starts, its mailbox
// in the hub and its filters.
type session struct {
	e     *Egress
	req   subRequest
	sub   *subscriber
	start int64 // first offset to send
	// startHeld: the client has the transactional results visible at
	// start whose held is at most this (a resume from such a result's
	// cursor); 0 otherwise.
	startHeld  int64
	replayFrom int64 // the replay reads from here (at or before start)
	liveFrom   int64 // the live feed delivers from here; before it, replay
	// memory holds the replay [replayFrom, liveFrom) when the index of
	// recent results covered it (inMemory); otherwise it is read from Kafka.
	memory   []event
	inMemory bool
	dedupe   *dedupe
	last     cursor
	// awaiting is a foreign cursor whose place in this cluster's topic is
	// not found yet (region.go); start is unset meanwhile.
	awaiting *cursor
	view     view // what the tenant's clients see of final results
	closed   bool
}

// open validates req, waits until the live reader is positioned, finds
// where the replay starts and registers the mailbox. The caller must
// close the session.
func (e *Egress) open(ctx context.Context, req subRequest) (*session, *apiError) {
	if !envelope.ValidConversationID(req.conv) {
		return nil, &apiError{status: http.StatusBadRequest, code: "invalid_request",
			msg: "conversation_id must be 1 to 128 characters of letters, digits and ._:-"}
	}
	if len(req.until) > maxRequestIDLen {
		return nil, &apiError{status: http.StatusBadRequest, code: "invalid_request",
			msg: fmt.Sprintf("request_id must be at most %d bytes", maxRequestIDLen)}
	}
	var from *cursor
	if req.from != "" {
		c, err := e.cursors.open(req.tenant, req.conv, req.from)
		if err != nil {
			return nil, &apiError{status: http.StatusBadRequest, code: "invalid_cursor", msg: err.Error()}
		}
		from = &c
	}
	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, &apiError{status: http.StatusServiceUnavailable, code: "unavailable", msg: ctx.Err().Error()}
	case <-time.After(5 * time.Second):
		return nil, &apiError{status: http.StatusServiceUnavailable, code: "unavailable",
			msg: "egress is not reading the results topic yet", retryAfter: true}
	}
	partition := envelope.Partition(req.conv, e.hub.partitions())
	if from != nil && from.partition != partition {
		return nil, &apiError{status: http.StatusBadRequest, code: "invalid_cursor",
			msg: "the cursor is from before the results topic's partitions changed; open the stream without it"}
	}
	// Find where the replay starts before subscribing: anything that
	// arrives meanwhile is at or after liveFrom and comes live. The index
	// of recent results knows, unless this instance started less than
	// ReplayWindow ago or evicted part of the window; then Kafka does.
	since := time.Now().Add(-e.cfg.ReplayWindow)
	window, ok := e.hub.windowStart(partition, since)
	var err error
	if !ok {
		window, err = e.offsetAt(ctx, partition, since)
	}
	foreign := from != nil && e.foreign(*from)
	var start, replayFrom int64
	switch {
	case foreign:
		// Another cluster's cursor: search for the client's place from a
		// little before its event (region.go); nothing is sent until then.
		if replayFrom, err = e.foreignStart(ctx, partition, *from, since); err != nil {
			return nil, &apiError{status: http.StatusServiceUnavailable, code: "unavailable",
				msg: "cannot look up the cursor's place in this cluster: " + err.Error(), retryAfter: true}
		}
		start = math.MaxInt64
	case from != nil:
		// A resume replays the window before the cursor too, without
		// sending it, so that dedupe knows the runs and attempts the
		// client has seen (a rerun's chunk 0 must not look new after a
		// reconnect). Without the lookup it resumes without that memory.
		start = from.offset + 1
		replayFrom = start
		if from.held > 0 {
			// The cursor is of a result its commit marker let through:
			// the marker may have let through more, which the client
			// lacks, and the replay must read their transaction from its
			// first record (txnview) to see them.
			start, replayFrom = from.offset, from.held-1
		}
		if err == nil {
			replayFrom = min(window, replayFrom)
		}
	case err != nil:
		return nil, &apiError{status: http.StatusServiceUnavailable, code: "unavailable",
			msg: "cannot look up the replay start: " + err.Error(), retryAfter: true}
	default:
		start, replayFrom = window, window
	}
	if !e.caps.acquire(req.tenant, req.conv) {
		e.metrics.refused.Inc()
		return nil, &apiError{status: http.StatusTooManyRequests, code: "too_many_streams", retryAfter: true,
			msg: "too many open streams for this tenant or conversation"}
	}
	sub, liveFrom, memory, inMemory := e.hub.subscribe(req.conv, partition, e.cfg.SubscriberBuffer, replayFrom)
	s := &session{e: e, req: req, sub: sub, start: start, replayFrom: replayFrom, liveFrom: liveFrom,
		memory: memory, inMemory: inMemory, dedupe: newDedupe(), last: cursor{partition: partition, offset: start - 1},
		view: viewOf(e.tenantSet().Tenant(req.tenant))}
	switch {
	case foreign:
		// Until its place is found the client keeps its own cursor.
		s.awaiting, s.last = from, *from
	case from != nil:
		s.last, s.startHeld = *from, from.held
	}
	return s, nil
}

// token is c's cursor token for this stream's client.
func (s *session) token(c cursor) string { return s.e.cursors.seal(s.req.tenant, s.req.conv, c) }

// close leaves the hub and gives back the stream's slot; it is safe to
// call more than once (from the stream's goroutine).
func (s *session) close() {
	s.e.hub.unsubscribe(s.sub)
	if !s.closed {
		s.closed = true
		s.e.caps.release(s.req.tenant, s.req.conv)
	}
}

// run replays, then follows the live feed, writing to out until the client
// leaves (ctx), the request named by until finishes, or the hub ends the
// subscription (overflow, shutdown). A client that leaves its connection's
// send queue full (errSlow) is ended with reason overflow too. It returns
// the write error that ended it, if any.
func (s *session) run(ctx context.Context, out sink) error {
	err := s.stream(ctx, out)
	if errors.Is(err, errSlow) {
		s.e.metrics.overflows.Inc()
		return out.end(endOverflow, s.token(s.last))
	}
	return err
}

func (s *session) stream(ctx context.Context, out sink) error {
	e := s.e
	partition := s.last.partition
	if s.replayFrom < s.liveFrom {
		err := s.replay(ctx, out)
		switch {
		case errors.Is(err, errStreamDone):
			return out.end(endDone, s.token(s.last))
		case errors.Is(err, errReplayShutdown):
			return out.end(endShutdown, s.token(s.last))
		case err != nil && ctx.Err() == nil && !errors.Is(err, errWrite):
			e.log.Warn("replay failed", "conversation_id", s.req.conv, "partition", partition, "err", err)
			return out.end(endReplayFailed, s.token(s.last))
		case err != nil:
			return err
		}
	}
	heartbeat := time.NewTicker(e.cfg.Heartbeat)
	defer heartbeat.Stop()
	changed := e.tenantsChanged()
	if !s.keyValid() { // revoked by a reload since the stream was opened
		e.metrics.revoked.Inc()
		return out.end(endRevoked, s.token(s.last))
	}
	for {
		select {
		case <-changed: // a tenants reload: a revoked key ends the stream
			changed = e.tenantsChanged()
			if !s.keyValid() {
				e.metrics.revoked.Inc()
				return out.end(endRevoked, s.token(s.last))
			}
		case ev := <-s.sub.ch:
			if err := s.send(out, *ev); err != nil {
				if errors.Is(err, errStreamDone) {
					return out.end(endDone, s.token(s.last))
				}
				return err
			}
		case <-s.sub.done:
			// Deliver what was queued before the hub let go, then say why.
			// The hub sends nothing more once done is closed.
			for len(s.sub.ch) > 0 {
				if err := s.send(out, *<-s.sub.ch); err != nil {
					if errors.Is(err, errStreamDone) {
						return out.end(endDone, s.token(s.last))
					}
					return err
				}
			}
			if s.sub.reason != "" {
				return out.end(s.sub.reason, s.token(s.last))
			}
			return nil
		case <-heartbeat.C:
			if err := out.keepAlive(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		case <-e.stop:
			return out.end(endShutdown, s.token(s.last))
		}
	}
}

// keyValid reports whether the stream's API key is still one of the
// current tenants' (always, without API keys).
func (s *session) keyValid() bool {
	if s.e.tenants == nil {
		return true
	}
	return s.req.cred.valid(s.e.tenants.Set())
}

// replay sends the range [replayFrom, liveFrom) from memory or Kafka.
func (s *session) replay(ctx context.Context, out sink) error {
	e := s.e
	if !s.inMemory {
		e.metrics.replays.WithLabelValues("kafka").Inc()
		return e.replay(ctx, s.req.conv, s.last.partition, s.replayFrom, s.liveFrom, s.start, func(ev event) error { return s.send(out, ev) })
	}
	e.metrics.replays.WithLabelValues("memory").Inc()
	memory := s.memory
	s.memory = nil // the events are sent once; let them go with the stream
	for _, ev := range memory {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.send(out, ev); err != nil {
			return err
		}
	}
	return nil
}

var (
	// errStreamDone ends a stream that has sent what it was asked for.
	errStreamDone = errors.New("stream done")
	// errWrite wraps a failure to write to the client.
	errWrite = errors.New("write to client")
)

// had reports whether the client has ev already: it is before the
// stream's start, or one of the results a commit marker let through at
// the start that the client's cursor covers (see cursor.held).
func (s *session) had(ev event) bool {
	return ev.offset < s.start || (ev.offset == s.start && ev.held > 0 && ev.held <= s.startHeld)
}

// send filters ev (tenant, resume cursor, duplicates) and writes it.
func (s *session) send(out sink, ev event) (err error) {
	if ev.ctx != nil {
		_, span := s.e.cfg.Kafka.Tracing.Start(ev.ctx, "deliver", trace.SpanKindProducer, attribute.String("request_id", ev.res.GetRequestId()))
		defer func() { telemetry.End(span, err) }()
	}
	m := s.e.metrics
	if s.req.tenant != "" && ev.res.GetTenant() != s.req.tenant {
		m.filtered.WithLabelValues("other_tenant").Inc()
		return nil
	}
	ok, reason, restart := s.dedupe.admit(ev.res)
	if s.awaiting != nil && s.placeForeign(ev) || s.had(ev) {
		// The client had it (a resume): it only teaches dedupe.
		m.dropped.WithLabelValues("before_cursor").Inc()
		return nil
	}
	if !ok {
		m.dropped.WithLabelValues(reason).Inc()
		return nil
	}
	if restart {
		if err := out.restart(&pb.Restart{RequestId: ev.res.GetRequestId(), ConversationId: ev.res.GetConversationId(),
			Attempt: ev.res.GetAttempt()}); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		m.events.WithLabelValues("restart").Inc()
	}
	name := eventName(ev.res)
	c := cursor{partition: ev.partition, offset: ev.offset, at: ev.at, origin: s.e.origin, ident: eventIdent(ev.res), held: ev.held}
	if ev.json == nil {
		ev.json = &lazyJSON{res: ev.res}
	}
	if err := out.event(s.token(c), name, ev, s.view); err != nil {
		return fmt.Errorf("%w: %w", errWrite, err)
	}
	s.last = c
	m.events.WithLabelValues(name).Inc()
	if ts := ev.timestamp; !ts.IsZero() {
		m.latency.Observe(time.Since(ts).Seconds())
	}
	if s.req.until != "" && name != "chunk" && ev.res.GetRequestId() == s.req.until {
		return errStreamDone
	}
	return nil
}

// eventName names a result's event: chunk, result or error.
func eventName(res *pb.Result) string {
	switch {
	case res.GetFinal() != nil:
		return "result"
	case res.GetError() != nil:
		return "error"
	default:
		return "chunk"
	}
}
