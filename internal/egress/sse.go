package egress

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
)

// cursor is a place in the results topic: the "partition:offset" of the
// last event a client has (offset -1: nothing yet).
type cursor struct {
	partition int32
	offset    int64
}

func (c cursor) String() string { return fmt.Sprintf("%d:%d", c.partition, c.offset) }

func parseCursor(s string) (cursor, error) {
	p, o, ok := strings.Cut(s, ":")
	pi, perr := strconv.ParseInt(p, 10, 32)
	oi, oerr := strconv.ParseInt(o, 10, 64)
	if !ok || perr != nil || oerr != nil || pi < 0 || oi < -1 {
		return cursor{}, fmt.Errorf("cursor %q: want partition:offset", s)
	}
	return cursor{int32(pi), oi}, nil
}

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": code, "message": msg}})
}

// handleEvents serves GET /v1/conversations/{id}/events as Server-Sent
// Events. Each event is named chunk, result or error, carries the Result as
// JSON in data and its cursor in id. A Last-Event-ID header (or ?from=)
// resumes after that cursor; ?request_id= ends the stream after that
// request's terminal event.
func (e *Egress) handleEvents(w http.ResponseWriter, r *http.Request) {
	conv := r.PathValue("conversation_id")
	if !envelope.ValidConversationID(conv) {
		httpError(w, http.StatusBadRequest, "invalid_request", "conversation_id must be 1 to 128 characters of letters, digits and ._:-")
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, "internal", "streaming is not supported by this connection")
		return
	}
	var from *cursor
	if s := cmp.Or(r.Header.Get("Last-Event-ID"), r.URL.Query().Get("from")); s != "" {
		c, err := parseCursor(s)
		if err != nil {
			httpError(w, http.StatusBadRequest, "invalid_cursor", err.Error())
			return
		}
		from = &c
	}
	until := r.URL.Query().Get("request_id")

	select {
	case <-e.ready:
	case <-r.Context().Done():
		return
	case <-time.After(5 * time.Second):
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "unavailable", "egress is not reading the results topic yet")
		return
	}
	partition := envelope.Partition(conv, e.hub.partitions())
	if from != nil && from.partition != partition {
		httpError(w, http.StatusBadRequest, "invalid_cursor", fmt.Sprintf("cursor %s is not on this conversation's partition %d", from, partition))
		return
	}

	// Find where the replay starts before subscribing: anything that arrives
	// meanwhile is at or after liveFrom and comes through the live feed.
	start := int64(0)
	if from != nil {
		start = from.offset + 1
	} else {
		var err error
		if start, err = e.offsetAt(r.Context(), partition, time.Now().Add(-e.cfg.ReplayWindow)); err != nil {
			w.Header().Set("Retry-After", "1")
			httpError(w, http.StatusServiceUnavailable, "unavailable", "cannot look up the replay start: "+err.Error())
			return
		}
	}
	sub, liveFrom := e.hub.subscribe(conv, partition, e.cfg.SubscriberBuffer)
	defer e.hub.unsubscribe(sub)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": conversation %s on partition %d\n\n", conv, partition)
	flusher.Flush()

	s := &stream{e: e, w: w, flusher: flusher, dedupe: newDedupe(), until: until,
		last: cursor{partition, start - 1}, floor: start}
	ctx := r.Context()
	if start < liveFrom {
		err := e.replay(ctx, conv, partition, start, liveFrom, s.send)
		if errors.Is(err, errStreamDone) {
			return
		}
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("replay failed", "conversation_id", conv, "partition", partition, "err", err)
				s.control("replay_failed")
			}
			return
		}
	}
	heartbeat := time.NewTicker(e.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case ev := <-sub.ch:
			if s.send(ev) != nil {
				return
			}
		case <-sub.done:
			// Deliver what was queued before the hub let go, then say why.
			for drained := false; !drained; {
				select {
				case ev := <-sub.ch:
					if s.send(ev) != nil {
						return
					}
				default:
					drained = true
				}
			}
			if sub.reason != "" {
				s.control(sub.reason)
			}
			return
		case <-heartbeat.C:
			s.comment("keep-alive")
		case <-ctx.Done():
			return
		case <-e.stop:
			s.control("shutdown")
			return
		}
	}
}

// errStreamDone ends a stream that has sent what it was asked for.
var errStreamDone = errors.New("stream done")

// stream writes one subscriber's events.
type stream struct {
	e       *Egress
	w       http.ResponseWriter
	flusher http.Flusher
	dedupe  *dedupe
	until   string
	last    cursor
	floor   int64 // events below this offset were sent before (a resume)
	buf     bytes.Buffer
}

func (s *stream) send(ev event) (err error) {
	if ev.ctx != nil {
		_, span := s.e.cfg.Kafka.Tracing.Start(ev.ctx, "deliver", trace.SpanKindProducer, attribute.String("request_id", ev.res.GetRequestId()))
		defer func() { kafkaconf.End(span, err) }()
	}
	if ev.offset < s.floor {
		// A resume on an instance whose live feed is behind the cursor.
		s.e.metrics.dropped.WithLabelValues("before_cursor").Inc()
		return nil
	}
	ok, reason := s.dedupe.admit(ev.res)
	if !ok {
		s.e.metrics.dropped.WithLabelValues(reason).Inc()
		return nil
	}
	name := "chunk"
	switch {
	case ev.res.GetFinal() != nil:
		name = "result"
	case ev.res.GetError() != nil:
		name = "error"
	}
	data, err := envelope.JSON.Marshal(ev.res)
	if err != nil {
		return err
	}
	// protojson varies its spacing on purpose; clients get one stable form.
	s.buf.Reset()
	if err := json.Compact(&s.buf, data); err != nil {
		return err
	}
	s.last = cursor{ev.partition, ev.offset}
	if _, err := fmt.Fprintf(s.w, "id: %s\nevent: %s\ndata: %s\n\n", s.last, name, s.buf.Bytes()); err != nil {
		return err
	}
	s.flusher.Flush()
	s.e.metrics.events.WithLabelValues(name).Inc()
	if s.until != "" && name != "chunk" && ev.res.GetRequestId() == s.until {
		return errStreamDone
	}
	return nil
}

func (s *stream) comment(text string) {
	fmt.Fprintf(s.w, ": %s\n\n", text)
	s.flusher.Flush()
}

// control tells the client why the stream ends and where to resume.
func (s *stream) control(reason string) {
	data, _ := json.Marshal(map[string]string{"reason": reason, "cursor": s.last.String()})
	fmt.Fprintf(s.w, "event: end\ndata: %s\n\n", data)
	s.flusher.Flush()
}

// offsetAt returns the first offset of partition at or after t (the end
// if there is none).
func (e *Egress) offsetAt(ctx context.Context, partition int32, t time.Time) (int64, error) {
	listed, err := e.adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), e.topic)
	if err != nil {
		return 0, err
	}
	o, ok := listed.Lookup(e.topic, partition)
	if !ok {
		return 0, fmt.Errorf("partition %d not listed", partition)
	}
	if o.Err != nil {
		return 0, o.Err
	}
	return o.Offset, nil
}

// replay reads partition from offset from up to (not including) to with a
// short-lived reader and sends conv's results through send.
func (e *Egress) replay(ctx context.Context, conv string, partition int32, from, to int64, send func(event) error) error {
	cl, err := kgo.NewClient(append(e.cfg.Kafka.Opts(nil),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{e.topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ReplayTimeout)
	defer cancel()
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("replay %d..%d: %w", from, to, err)
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return ferr
		}
		done := false
		fetches.EachRecord(func(rec *kgo.Record) {
			if done || rec.Offset >= to {
				done = true
				return
			}
			if rec.Offset == to-1 {
				done = true
			}
			if rec.Attrs.IsControl() || string(rec.Key) != conv {
				return
			}
			res, err := envelope.DecodeResult(rec)
			if err != nil {
				e.metrics.undecodable.Inc()
				return
			}
			if serr := send(event{ctx: rec.Context, partition: rec.Partition, offset: rec.Offset, res: res}); serr != nil && ferr == nil {
				ferr = serr
				done = true
			}
		})
		if ferr != nil {
			return ferr
		}
		if done {
			return nil
		}
	}
}
