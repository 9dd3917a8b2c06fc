package egress

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func httpError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": code, "message": msg}}) // the client may be gone
}

func writeAPIError(w http.ResponseWriter, err *apiError) {
	if err.retryAfter {
		w.Header().Set("Retry-After", "1")
	}
	httpError(w, err.status, err.code, err.msg)
}

// handleEvents serves GET /v1/conversations/{id}/events as Server-Sent
// Events. Each event is named chunk, result or error, carries the Result as
// JSON in data and its cursor in id. A Last-Event-ID header (or ?from=)
// resumes after that cursor; ?request_id= ends the stream after that
// request's terminal event.
func (e *Egress) handleEvents(w http.ResponseWriter, r *http.Request) {
	tenant, cred, ok := e.authHTTP(w, r)
	if !ok {
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, "internal", "streaming is not supported by this connection")
		return
	}
	s, aerr := e.open(r.Context(), subRequest{
		tenant: tenant,
		cred:   cred,
		conv:   r.PathValue("conversation_id"),
		from:   cmp.Or(r.Header.Get("Last-Event-ID"), r.URL.Query().Get("from")),
		until:  r.URL.Query().Get("request_id"),
	})
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	defer s.close()
	e.metrics.subscribers.WithLabelValues("sse").Inc()
	defer e.metrics.subscribers.WithLabelValues("sse").Dec()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, ": conversation %s\n\n", s.req.conv)
	flusher.Flush()
	_ = s.run(r.Context(), &sseSink{ctx: r.Context(), w: w, flusher: flusher, rc: http.NewResponseController(w), // its error is a client gone mid-write
		timeout: e.cfg.WriteTimeout, backlog: e.newBacklog(r.Context())})
}

// sseSink writes Server-Sent Events.
type sseSink struct {
	ctx     context.Context // the request's: the client left when it ends
	backlog *backlog        // nil: not watched
	w       http.ResponseWriter
	flusher http.Flusher
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
}

// deadline bounds the next write: a client that stops reading altogether
// is let go instead of holding its stream's goroutine.
func (s *sseSink) deadline() { _ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout)) }

func (s *sseSink) event(cur string, name string, ev event, v view) error {
	data, err := ev.json.bytes(v)
	if err != nil {
		return err
	}
	s.buf.Reset()
	s.buf.WriteString("id: ")
	s.buf.WriteString(cur)
	s.buf.WriteString("\nevent: ")
	s.buf.WriteString(name)
	s.buf.WriteString("\ndata: ")
	s.buf.Write(data)
	s.buf.WriteString("\n\n")
	if err := s.backlog.wait(s.ctx, s.buf.Len()); err != nil {
		return err
	}
	s.deadline()
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	s.flusher.Flush()
	return nil
}

func (s *sseSink) keepAlive(ctx context.Context) error {
	const keepAlive = ": keep-alive\n\n"
	if err := s.backlog.wait(ctx, len(keepAlive)); err != nil {
		return err
	}
	s.deadline()
	if _, err := io.WriteString(s.w, keepAlive); err != nil {
		return err
	}
	s.flusher.Flush()
	return nil
}

// restart is an event without an id: the client's Last-Event-ID stays
// at the last answer.
func (s *sseSink) restart(r *pb.Restart) error {
	s.buf.Reset()
	s.buf.WriteString("event: restart\ndata: ")
	if err := appendJSON(&s.buf, r); err != nil {
		return err
	}
	s.buf.WriteString("\n\n")
	if err := s.backlog.wait(s.ctx, s.buf.Len()); err != nil {
		return err
	}
	s.deadline()
	if _, err := s.w.Write(s.buf.Bytes()); err != nil {
		return err
	}
	s.flusher.Flush()
	return nil
}

// end tells the client why the stream ends and where to resume.
func (s *sseSink) end(reason string, cur string) error {
	data, _ := json.Marshal(map[string]string{"reason": reason, "cursor": cur})
	s.deadline()
	if _, err := fmt.Fprintf(s.w, "event: end\ndata: %s\n\n", data); err != nil {
		return err
	}
	s.flusher.Flush()
	return nil
}
