package console

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"time"
)

//go:embed static
var static embed.FS

// Prefix is where the console is served.
const Prefix = "/console"

// Handler serves the page under Prefix: the page itself (/console/), its
// files, GET /console/api/snapshot (the Snapshot as JSON) and GET
// /console/api/events (a Server-Sent Event "snapshot" every Interval).
// Mount it for Prefix and Prefix+"/".
func (c *Console) Handler() http.Handler {
	files, _ := fs.Sub(static, "static") // the directory is embedded
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"/", http.StripPrefix(Prefix+"/", http.FileServerFS(files)))
	mux.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET "+Prefix+"/api/snapshot", c.serveSnapshot)
	mux.HandleFunc("GET "+Prefix+"/api/events", c.serveEvents)
	return headers(mux)
}

// headers keeps the page to its own files: no inline script, no other
// origin, no framing.
func headers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

func (c *Console) serveSnapshot(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c.Snapshot())
}

// serveEvents streams a snapshot every Interval until the client goes
// away; at most MaxStreams at once.
func (c *Console) serveEvents(w http.ResponseWriter, r *http.Request) {
	select {
	case c.streams <- struct{}{}:
		defer func() { <-c.streams }()
	default:
		http.Error(w, "too many console pages open", http.StatusServiceUnavailable)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		b, _ := json.Marshal(c.Snapshot()) // a Snapshot always marshals
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write(append(append([]byte("event: snapshot\ndata: "), b...), '\n', '\n')); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}
