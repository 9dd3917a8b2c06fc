package egress

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/coder/websocket"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// handleWS serves GET /v1/conversations/{id}/ws: the same stream as
// handleEvents, as WebSocket text messages. Each message is one JSON
// object: {"cursor","event","result"} for a result (event chunk, result or
// error), and last {"event":"end","reason","cursor"} before the server
// closes the connection. ?from= (or a Last-Event-ID header) resumes after a
// cursor; ?request_id= ends the stream after that request's terminal
// result. The server reads no messages: a client's data message closes the
// connection with status 1008 (policy violation).
func (e *Egress) handleWS(w http.ResponseWriter, r *http.Request) {
	tenant, cred, ok := e.authHTTP(w, r)
	if !ok {
		return
	}
	// Refusals are plain HTTP answers, before the upgrade.
	s, aerr := e.open(r.Context(), subRequest{
		tenant: tenant,
		cred:   cred,
		conv:   r.PathValue("conversation_id"),
		from:   cmp.Or(r.URL.Query().Get("from"), r.Header.Get("Last-Event-ID")),
		until:  r.URL.Query().Get("request_id"),
	})
	if aerr != nil {
		writeAPIError(w, aerr)
		return
	}
	defer s.close()
	opts := &websocket.AcceptOptions{OriginPatterns: e.cfg.WSOriginPatterns}
	if tok := tokenProtocol(r); tok != "" {
		opts.Subprotocols = []string{tokenProtocolPrefix + tok} // a browser fails the upgrade unless its protocol is echoed
	}
	conn, err := websocket.Accept(w, r, opts)
	if err != nil {
		return // Accept has answered the client
	}
	defer conn.CloseNow()
	e.metrics.subscribers.WithLabelValues("websocket").Inc()
	defer e.metrics.subscribers.WithLabelValues("websocket").Dec()
	// The reader goroutine answers pings and closes; it ends the stream
	// when the client leaves or sends a data message (which it must not).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	conn.SetReadLimit(4096)
	violated := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer cancel()
		if _, _, err := conn.Read(ctx); err == nil {
			close(violated)
		}
	}()
	out := &wsSink{ctx: ctx, conn: conn, timeout: e.cfg.WriteTimeout, backlog: e.newBacklog(r.Context())}
	err = s.run(ctx, out)
	select {
	case <-violated:
		conn.Close(websocket.StatusPolicyViolation, "this stream takes no messages from the client")
	default:
		if err == nil && !out.closed {
			conn.Close(websocket.StatusGoingAway, "")
		}
	}
	conn.CloseNow()
	<-readDone
}

// wsSink writes WebSocket messages.
type wsSink struct {
	ctx     context.Context
	backlog *backlog // nil: not watched
	conn    *websocket.Conn
	timeout time.Duration
	buf     bytes.Buffer
	closed  bool
}

// write sends one message once the connection's backlog allows.
func (s *wsSink) write(data []byte) error {
	if err := s.backlog.wait(s.ctx, len(data)); err != nil {
		return err
	}
	return s.send(data)
}

// send sends one message within the write timeout.
func (s *wsSink) send(data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	return s.conn.Write(ctx, websocket.MessageText, data)
}

func (s *wsSink) event(cur string, name string, ev event, v view) error {
	data, err := ev.json.bytes(v)
	if err != nil {
		return err
	}
	s.buf.Reset()
	s.buf.WriteString(`{"cursor":"`)
	s.buf.WriteString(cur) // base64url and a prefix: nothing to escape
	s.buf.WriteString(`","event":"`)
	s.buf.WriteString(name)
	s.buf.WriteString(`","answer":`)
	s.buf.Write(data)
	s.buf.WriteByte('}')
	return s.write(s.buf.Bytes())
}

func (s *wsSink) keepAlive(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.conn.Ping(ctx)
}

// end sends the end message and closes: normally when the stream did
// what was asked, with 1013 (try again later) otherwise; the close reason
// repeats why and the cursor.
func (s *wsSink) restart(r *pb.Restart) error {
	s.buf.Reset()
	s.buf.WriteString(`{"event":"restart","restart":`)
	if err := appendJSON(&s.buf, r); err != nil {
		return err
	}
	s.buf.WriteByte('}')
	return s.write(s.buf.Bytes())
}

func (s *wsSink) end(reason string, cur string) error {
	data, _ := json.Marshal(map[string]string{"event": "end", "reason": reason, "cursor": cur})
	if err := s.send(data); err != nil {
		return err
	}
	code := websocket.StatusTryAgainLater
	switch reason {
	case endDone:
		code = websocket.StatusNormalClosure
	case endRevoked:
		code = websocket.StatusPolicyViolation
	}
	s.closed = true
	return s.conn.Close(code, reason+"; resume from "+cur)
}
