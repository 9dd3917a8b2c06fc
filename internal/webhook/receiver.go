package webhook

import (
	"net/url"
	"strings"
	"sync"
	"time"
)

// receivers bounds the deliveries in flight to each receiver, so a slow or
// dead receiver holds at most its share of the in-flight budget
// (Config.MaxPerReceiver) while its deliveries wait out their tries; the
// others' deliveries go on in the rest. A delivery whose receiver is at
// its bound answers the engine keyorder.Later: it waits without a place in
// the budget, first of its conversation, and is tried again after
// receiverBusyWait.
type receivers struct {
	max int
	mu  sync.Mutex
	n   map[string]int // receiver -> deliveries in flight; no zero entries
}

func newReceivers(limit int) *receivers { return &receivers{max: limit, n: map[string]int{}} }

// acquire takes a place for a delivery to rc, if it has one free.
func (r *receivers) acquire(rc string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n[rc] >= r.max {
		return false
	}
	r.n[rc]++
	return true
}

// release gives back a place acquire took.
func (r *receivers) release(rc string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n[rc]--; r.n[rc] <= 0 {
		delete(r.n, rc)
	}
}

// receiverBusyWait is how long a delivery whose receiver is at its bound
// waits before it asks again (with jitter).
const receiverBusyWait = 200 * time.Millisecond

// receiverOf names the receiver of a target: its scheme, host and port
// (the scheme's default when the URL names none), so the paths of one
// endpoint share one bound.
func receiverOf(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") {
			port = "443"
		}
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Hostname()) + ":" + port
}
