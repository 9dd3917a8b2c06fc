package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// wsDriver submits requests over ingress's WebSocket API (GET /v1/ws). It
// keeps a pool of sockets; a Send or SendCall holds one socket for its
// frames and their answers, so a call's messages travel one after another
// on one stream, which is the order ingress stores them in.
type wsDriver struct {
	url     string
	key     string
	timeout time.Duration
	maxConn int

	mu     sync.Mutex
	free   []*websocket.Conn
	open   int
	freed  *sync.Cond
	closed bool
	seq    uint64
}

func newWSDriver(ingressURL, apiKey string, timeout time.Duration, maxConn int) *wsDriver {
	u := strings.TrimRight(ingressURL, "/")
	u = "ws" + strings.TrimPrefix(u, "http") + "/v1/ws"
	d := &wsDriver{url: u, key: apiKey, timeout: timeout, maxConn: maxConn}
	d.freed = sync.NewCond(&d.mu)
	return d
}

func (d *wsDriver) Name() string { return "ws" }

func (d *wsDriver) Send(ctx context.Context, m Message) error {
	return d.SendCall(ctx, []Message{m})[0]
}

// SendCall writes one submit frame per message on one socket, in order,
// then reads until each is answered or the timeout passes.
func (d *wsDriver) SendCall(ctx context.Context, ms []Message) []error {
	errs := make([]error, len(ms))
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, err := d.get(ctx)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	broken := d.exchange(ctx, c, ms, errs)
	d.put(c, broken)
	return errs
}

// exchange sends ms on c and fills errs; it reports whether c is no longer
// usable.
func (d *wsDriver) exchange(ctx context.Context, c *websocket.Conn, ms []Message, errs []error) (broken bool) {
	d.mu.Lock()
	base := d.seq
	d.seq += uint64(len(ms))
	d.mu.Unlock()
	index := make(map[string]int, len(ms))
	for i, m := range ms {
		id := strconv.FormatUint(base+uint64(i), 10)
		index[id] = i
		frame := requestFields(m)
		frame["type"], frame["id"], frame["conversation_id"] = "submit", id, m.Conversation
		if m.IdempotencyKey != "" {
			frame["idempotency_key"] = m.IdempotencyKey
		}
		b, _ := json.Marshal(frame)
		if err := c.Write(ctx, websocket.MessageText, b); err != nil {
			fillUnanswered(errs, index, &SendError{Code: transportCode(err), Err: err})
			return true
		}
	}
	for answered := 0; answered < len(ms); {
		_, data, err := c.Read(ctx)
		if err != nil {
			fillUnanswered(errs, index, &SendError{Code: transportCode(err), Err: err})
			return true
		}
		var rep struct {
			Type         string `json:"type"`
			ID           string `json:"id"`
			Status       int    `json:"status"`
			RetryAfterMS int64  `json:"retry_after_ms"`
			Error        *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &rep); err != nil {
			fillUnanswered(errs, index, &SendError{Code: "ws_bad_frame", Err: err})
			return true
		}
		i, ok := index[rep.ID]
		if !ok {
			continue // an answer to a frame of an earlier, abandoned call
		}
		delete(index, rep.ID)
		answered++
		switch {
		case rep.Type == "ack":
		case rep.Error != nil:
			errs[i] = &SendError{Code: fmt.Sprintf("ws_%d_%s", rep.Status, rep.Error.Code), Status: rep.Status, Err: errors.New(rep.Error.Message),
				RetryAfter: time.Duration(rep.RetryAfterMS) * time.Millisecond}
		default:
			errs[i] = &SendError{Code: "ws_bad_frame", Err: fmt.Errorf("unexpected frame %q", data)}
		}
	}
	return false
}

// fillUnanswered sets err for every message still waiting for an answer.
func fillUnanswered(errs []error, index map[string]int, err error) {
	for _, i := range index {
		errs[i] = err
	}
}

// get returns a free socket, dials a new one while fewer than maxConn are
// open, or waits for one to be returned.
func (d *wsDriver) get(ctx context.Context) (*websocket.Conn, error) {
	d.mu.Lock()
	for len(d.free) == 0 && d.open >= d.maxConn && !d.closed && ctx.Err() == nil {
		stop := context.AfterFunc(ctx, func() { d.mu.Lock(); d.freed.Broadcast(); d.mu.Unlock() })
		d.freed.Wait()
		stop()
	}
	switch {
	case d.closed:
		d.mu.Unlock()
		return nil, &SendError{Code: "closed", Err: errors.New("driver closed")}
	case ctx.Err() != nil:
		d.mu.Unlock()
		return nil, &SendError{Code: "timeout", Err: ctx.Err()}
	case len(d.free) > 0:
		c := d.free[len(d.free)-1]
		d.free = d.free[:len(d.free)-1]
		d.mu.Unlock()
		return c, nil
	}
	d.open++
	d.mu.Unlock()
	h := http.Header{}
	if d.key != "" {
		h.Set("Authorization", "Bearer "+d.key)
	}
	c, resp, err := websocket.Dial(ctx, d.url, &websocket.DialOptions{HTTPHeader: h}) //nolint:bodyclose // the upgrade's response has no body to close
	if err != nil {
		d.put(nil, true)
		se := &SendError{Code: transportCode(err), Err: err}
		if resp != nil {
			se.Code, se.Status, se.RetryAfter = fmt.Sprintf("ws_upgrade_%d", resp.StatusCode), resp.StatusCode, retryAfterHeader(resp.Header)
		}
		return nil, se
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

// put returns c to the pool, or drops it when broken.
func (d *wsDriver) put(c *websocket.Conn, broken bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer d.freed.Signal()
	if broken || d.closed {
		d.open--
		if c != nil {
			c.CloseNow()
		}
		return
	}
	d.free = append(d.free, c)
}

func (d *wsDriver) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	for _, c := range d.free {
		c.Close(websocket.StatusNormalClosure, "")
	}
	d.free = nil
	d.freed.Broadcast()
}
