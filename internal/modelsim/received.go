package modelsim

import (
	"net/http"
	"strings"
	"sync"
)

// receivedMax is how many recent requests GET /debug/requests shows.
const receivedMax = 256

// received remembers the messages of the most recent chat requests, so a
// test can check what a model was sent (e.g. a conversation's history)
// without a model of its own. It is safe for concurrent use.
type received struct {
	mu   sync.Mutex
	ring []receivedRequest // at most receivedMax, oldest first after next
	next int
}

// receivedRequest is one request as GET /debug/requests shows it.
type receivedRequest struct {
	Model    string            `json:"model"`
	Messages []receivedMessage `json:"messages"`
}

type receivedMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

func (r *received) add(req chatRequest) {
	rr := receivedRequest{Model: req.Model, Messages: make([]receivedMessage, len(req.Messages))}
	for i, m := range req.Messages {
		rr.Messages[i] = receivedMessage(m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ring) < receivedMax {
		r.ring = append(r.ring, rr)
		return
	}
	r.ring[r.next] = rr
	r.next = (r.next + 1) % receivedMax
}

// list returns the remembered requests, oldest first, those whose last
// message contains last only when last is not empty.
func (r *received) list(last string) []receivedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := []receivedRequest{}
	for i := range r.ring {
		rr := r.ring[(r.next+i)%len(r.ring)]
		if last != "" && (len(rr.Messages) == 0 || !strings.Contains(rr.Messages[len(rr.Messages)-1].Content, last)) {
			continue
		}
		out = append(out, rr)
	}
	return out
}

// handleReceived answers GET /debug/requests[?last=TEXT]: the messages of
// the most recent chat requests (up to 256, oldest first), with last only
// those whose last message contains TEXT.
func (s *Server) handleReceived(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]receivedRequest{"requests": s.received.list(r.URL.Query().Get("last"))})
}
