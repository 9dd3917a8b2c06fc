package loadtest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// TestWSReaderResumes: an egress WebSocket that closes after its end
// message is reopened with ?from= the last cursor, and answers keep
// coming.
func TestWSReaderResumes(t *testing.T) {
	var mu sync.Mutex
	var froms []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/conversations/c/ws" || r.Header.Get("Authorization") != "Bearer k1" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		froms = append(froms, r.URL.Query().Get("from"))
		n := len(froms)
		mu.Unlock()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		if n > 2 {
			_, _, _ = c.Read(ctx) // until the client leaves
			return
		}
		id := fmt.Sprintf("r%d", n)
		for _, m := range []string{
			fmt.Sprintf(`{"cursor":"c%d","event":"chunk","answer":{"request_id":"%s","conversation_id":"c","attempt":1,"metadata":{"loadtest_id":"%s"},"chunk":{"index":0,"delta":"x"}}}`, 2*n, id, id),
			fmt.Sprintf(`{"event":"restart","restart":{"request_id":"%s","conversation_id":"c","attempt":2}}`, id),
			fmt.Sprintf(`{"cursor":"c%d","event":"result","answer":{"request_id":"%s","conversation_id":"c","attempt":2,"metadata":{"loadtest_id":"%s"},"final":{"content":"x","timings":{"dispatched_at":"2026-01-01T00:00:00Z","completed_at":"2026-01-01T00:00:00.2Z"}}}}`, 2*n+1, id, id),
			fmt.Sprintf(`{"event":"end","reason":"shutdown","cursor":"c%d"}`, 2*n+1),
		} {
			if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return
			}
		}
		c.Close(websocket.StatusTryAgainLater, "shutdown")
	}))
	defer srv.Close()
	r := newWSReader(srv.URL, "k1")
	got := collect(t, r, 4)
	if len(got) != 4 || got[0].Kind != Chunk || got[1].Kind != Final || got[1].Attempt != 2 || got[1].ModelTime.Milliseconds() != 200 || got[3].ID != "r2" {
		t.Fatalf("answers %+v: want chunk and final of r1 and r2", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(froms) < 2 || froms[0] != "" || froms[1] != "c3" {
		t.Errorf("from per connection %q, want \"\" then c3", froms)
	}
	if r.Reconnects() < 1 {
		t.Error("no reconnect counted")
	}
}
