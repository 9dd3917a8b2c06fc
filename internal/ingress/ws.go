package ingress

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// WebSocket protocol (GET /v1/ws, Authorization: Bearer KEY on the
// upgrade). Every frame is a JSON text message.
//
//	client: {"type":"submit","id":"c1","conversation_id":"demo","idempotency_key":"...", <the message body's fields>}
//	server: {"type":"ack","id":"c1","ack":{"request_id",...}}
//	server: {"type":"error","id":"c1","error":{"code","message","field"},"status":429,"retry_after_ms":1000}
//
// A socket may have up to WSMaxInFlight submits in flight; answers come as
// the broker acknowledges, so they may be out of order: id matches them.
// Submits are produced in the order they are read, so a conversation's
// accepted messages are stored in the order they were sent on the socket.
// A malformed frame gets an error frame (with the id when it could be read)
// and the socket stays open. On shutdown the server stops taking submits
// (each gets an "unavailable" error), answers those in flight, then closes
// with status 1001 (going away).

// wsFrame is a client frame.
type wsFrame struct {
	Type           string `json:"type"`
	ID             string `json:"id"`
	ConversationID string `json:"conversation_id"`
	IdempotencyKey string `json:"idempotency_key"`
	messageBody
}

// wsReply is a server frame.
type wsReply struct {
	Type         string    `json:"type"`
	ID           string    `json:"id"`
	Ack          *ack      `json:"ack,omitempty"`
	Error        *apiError `json:"error,omitempty"`
	Status       int       `json:"status,omitempty"`
	RetryAfterMS int64     `json:"retry_after_ms,omitempty"`
}

// decodeFrame decodes a client frame; a failure comes with the frame's id
// when it could be read.
func decodeFrame(data []byte) (wsFrame, *failure) {
	var fr wsFrame
	if f := decodeJSON(data, &fr); f != nil {
		var id struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(data, &id) == nil {
			fr.ID = id.ID
		}
		return fr, f
	}
	if fr.Type != "submit" {
		return fr, badRequest("type", "must be \"submit\", got %q", fr.Type)
	}
	if fr.ID == "" || len(fr.ID) > 256 {
		return fr, badRequest("id", "is required (1 to 256 characters): the answer carries it")
	}
	return fr, nil
}

func (in *Ingress) handleWS(w http.ResponseWriter, r *http.Request) {
	header, changed, set := r.Header.Get("Authorization"), in.tenants.Changed(), in.tenants.Set()
	t, f := in.authenticate(header)
	if f != nil {
		in.reject("ws", f)
		writeFailure(w, f)
		return
	}
	if !in.wsConns.add() {
		writeFailure(w, unavailable("ingress is shutting down"))
		return
	}
	defer in.wsConns.done()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered the client
	}
	in.metrics.wsConnections.Inc()
	defer in.metrics.wsConnections.Dec()
	c.SetReadLimit(in.cfg.MaxBodyBytes)

	// slots bounds the submits in flight; holding all of them means none is.
	slots := make(semaphore, in.cfg.WSMaxInFlight)
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	write := func(rep wsReply) {
		b, _ := json.Marshal(rep)
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		_ = c.Write(wctx, websocket.MessageText, b) // a failed write closes the socket; the reader sees it
	}
	fail := func(id string, f *failure) {
		e := f.apiError()
		write(wsReply{Type: "error", ID: id, Error: &e, Status: f.status, RetryAfterMS: f.retryAfter.Milliseconds()})
	}
	// A tenants reload that revokes the key closes the socket (policy
	// violation) after an error frame saying so.
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			changed = in.tenants.Changed()
			if _, f := in.stillValid("ws", header); f != nil {
				fail("", f)
				c.Close(websocket.StatusPolicyViolation, f.message)
				return
			}
		}
	}()
	// On shutdown: wait for the submits in flight (by taking every slot),
	// then close; the reader's Read then fails and the handler returns.
	closed := make(chan struct{})
	drained := false // set before closed is closed
	go func() {
		defer close(closed)
		select {
		case <-in.stop:
		case <-ctx.Done():
			return
		}
		for range cap(slots) {
			slots <- struct{}{}
		}
		drained = true
		c.Close(websocket.StatusGoingAway, "ingress is shutting down")
	}()

	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			break
		}
		if typ != websocket.MessageText {
			fail("", &failure{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", message: "frames must be JSON text"})
			continue
		}
		fr, f := decodeFrame(data)
		if f != nil {
			in.reject("ws", f)
			fail(fr.ID, f)
			continue
		}
		if cur := in.tenants.Set(); cur != set { // reloaded: the tenant's limits may have changed
			set = cur
			if t, f = in.stillValid("ws", header); f != nil {
				fail(fr.ID, f)
				continue
			}
		}
		select {
		case <-in.stop:
			fail(fr.ID, unavailable("ingress is shutting down"))
			continue
		case slots <- struct{}{}:
		}
		// begin here, in the reading goroutine, so that submits are handed
		// to the producer in the order they were read; wait in another.
		p := in.begin(ctx, submission{protocol: "ws", tenant: t, conversationID: fr.ConversationID,
			idempotencyKey: fr.IdempotencyKey, body: fr.messageBody})
		go func() {
			defer slots.release()
			a, f := p.wait()
			if f != nil {
				fail(fr.ID, f)
				return
			}
			write(wsReply{Type: "ack", ID: fr.ID, Ack: &a})
		}()
	}
	// The socket is closed (by the client, an error or shutdown): abandon
	// the submits' waits, then wait until each has returned its slot.
	cancel()
	<-closed
	if !drained {
		for range cap(slots) {
			slots <- struct{}{}
		}
	}
	c.CloseNow()
}
