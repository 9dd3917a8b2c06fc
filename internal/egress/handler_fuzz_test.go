package egress

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// flushCancel records a response and ends the request's context at its
// first flush: the stream has opened, which is as far as a fuzz input goes.
type flushCancel struct {
	*httptest.ResponseRecorder
	once   sync.Once
	cancel context.CancelFunc
}

func (f *flushCancel) Flush() {
	f.ResponseRecorder.Flush()
	f.once.Do(f.cancel)
}

// FuzzEventsHandler drives GET /v1/conversations/{id}/events with arbitrary
// conversation IDs, cursors (Last-Event-ID and ?from=), query strings and
// API keys against a running egress. The answer is a stream (200, only for
// a valid conversation ID) or a 4xx/503 in the documented error shape,
// never a panic or another status.
func FuzzEventsHandler(f *testing.F) {
	const key = "sk-fuzz-0123456789"
	f.Add("conv-1", "", "", "Bearer "+key)
	f.Add("conv-1", "0:5", "request_id=r1", "Bearer "+key)
	f.Add("../..", "1:2:3", "from=%zz", "Bearer "+key)
	f.Add("c", "99999999999:1", "", "Bearer wrong")
	f.Add(strings.Repeat("x", 129), "", "request_id="+strings.Repeat("r", 300), "Bearer "+key)
	tenants, err := tenant.Parse([]byte("tenants:\n  - name: fuzz\n    key_sha256: [" + tenant.HashKey(key) + "]\n"))
	if err != nil {
		f.Fatal(err)
	}
	h := newHarness(f)
	eg := h.start(func(c *Config) { c.Tenants = tenants })
	f.Add("conv-1", "", "from=3:-1&token="+eg.e.tokens.seal(streamToken{tenant: "fuzz", keyTag: tenant.KeyTag(key),
		expires: time.Now().Add(time.Hour), convs: []string{"conv-1"}}), "")
	f.Fuzz(func(t *testing.T, conv, lastEventID, rawQuery, auth string) {
		if _, err := url.ParseQuery(rawQuery); err != nil {
			rawQuery = url.QueryEscape(rawQuery)
		}
		r, err := http.NewRequest("GET", "/v1/conversations/c/events?"+rawQuery, nil)
		if err != nil {
			t.Skip(err)
		}
		r.SetPathValue("conversation_id", conv)
		for k, v := range map[string]string{"Last-Event-ID": lastEventID, "Authorization": auth} {
			if v != "" {
				r.Header.Set(k, v)
			}
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		w := &flushCancel{ResponseRecorder: httptest.NewRecorder(), cancel: cancel}
		eg.e.handleEvents(w, r.WithContext(ctx))
		res := w.Result()
		out := w.Body.String()
		switch res.StatusCode {
		case http.StatusOK:
			if !envelope.ValidConversationID(conv) {
				t.Fatalf("stream opened for invalid conversation ID %q", conv)
			}
			if res.Header.Get("Content-Type") != "text/event-stream" || !strings.HasPrefix(out, ": conversation ") {
				t.Fatalf("200 with Content-Type %q and body %q, want an event stream", res.Header.Get("Content-Type"), out)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusServiceUnavailable:
			var e struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(out), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("status %d with error body %q (%v), want {\"error\":{\"code\",\"message\"}}", res.StatusCode, out, err)
			}
		default:
			t.Fatalf("status %d: %q", res.StatusCode, out)
		}
	})
}
