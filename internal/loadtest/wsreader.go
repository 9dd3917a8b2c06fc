package loadtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// wsReader holds one egress WebSocket per watched conversation
// (GET /v1/conversations/{id}/ws, the key in the Authorization header).
// Each message is {"cursor","event","answer"} for a chunk, result or error,
// {"event":"restart",...} for a restart, and last {"event":"end",
// "reason","cursor"}; a socket that closes is reopened with ?from= set to
// the last cursor (see follower).
type wsReader struct {
	follower
	base string // ws:// or wss:// egress base
	key  string
}

func newWSReader(egressURL, apiKey string) *wsReader {
	u := strings.TrimRight(egressURL, "/")
	r := &wsReader{base: "ws" + strings.TrimPrefix(u, "http"), key: apiKey}
	r.follower.stream = r.stream
	return r
}

func (r *wsReader) Name() string { return "ws" }

// wsEvent is one message of egress's WebSocket stream.
type wsEvent struct {
	Cursor string          `json:"cursor"`
	Event  string          `json:"event"`
	Answer json.RawMessage `json:"answer"`
}

func (r *wsReader) stream(conv string, cursor *string, connected func()) error {
	u := r.base + "/v1/conversations/" + url.PathEscape(conv) + "/ws"
	if *cursor != "" {
		u += "?from=" + url.QueryEscape(*cursor)
	}
	h := http.Header{}
	if r.key != "" {
		h.Set("Authorization", "Bearer "+r.key)
	}
	c, resp, err := websocket.Dial(r.ctx, u, &websocket.DialOptions{HTTPHeader: h}) //nolint:bodyclose // the upgrade's response has no body to close
	if err != nil {
		if resp != nil {
			return fmt.Errorf("egress: %s: %w", resp.Status, err)
		}
		return err
	}
	defer c.CloseNow()
	c.SetReadLimit(8 << 20)
	connected()
	for {
		_, data, err := c.Read(r.ctx)
		if err != nil {
			return err
		}
		var ev wsEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("egress: bad message %.200q: %w", data, err)
		}
		if ev.Event == "end" {
			// The server closes next; resume from the end's cursor.
			if ev.Cursor != "" {
				*cursor = ev.Cursor
			}
			continue
		}
		if ev.Cursor != "" {
			*cursor = ev.Cursor
		}
		if a, ok := decodeEvent(ev.Event, string(ev.Answer), time.Now()); ok {
			r.deliver(a)
		}
	}
}
