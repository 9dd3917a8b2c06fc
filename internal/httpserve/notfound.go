package httpserve

import (
	"encoding/json"
	"net/http"
)

// JSONErrors serves mux, answering what matches none of its routes in the
// JSON error shape of the APIs, {"error":{"code","message"}}: 404
// not_found, or 405 method_not_allowed with the Allow header, instead of
// net/http's plain text.
func JSONErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// No route: let the mux's own handler decide (404, 405, or a
		// redirect to the cleaned path), then answer in JSON.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		var code, msg string
		switch rec.status {
		case http.StatusNotFound:
			code, msg = "not_found", "no such endpoint: "+r.URL.Path
		case http.StatusMethodNotAllowed:
			code, msg = "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+rec.header.Get("Allow")
			w.Header().Set("Allow", rec.header.Get("Allow"))
		default:
			mux.ServeHTTP(w, r) // a redirect: as the mux answers it
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rec.status)
		_ = json.NewEncoder(w).Encode(map[string]map[string]string{"error": {"code": code, "message": msg}}) // the client may be gone
	})
}

// statusRecorder keeps a handler's status and headers, dropping its body.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(b), nil
}
