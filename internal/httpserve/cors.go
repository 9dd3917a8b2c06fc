package httpserve

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// CORS configures cross-origin access for browser pages: none unless
// Origins lists the page's origin.
type CORS struct {
	// Origins are the allowed origins, exactly as browsers send them
	// (scheme://host[:port], e.g. https://app.example.com), or "*" for
	// any. Empty: no cross-origin access (the default).
	Origins []string
	// Methods are the methods a preflight allows. Default GET, POST.
	Methods []string
	// Headers are the request headers a preflight allows. Default
	// Authorization, Content-Type, Idempotency-Key, Last-Event-ID.
	Headers []string
	// Expose are response headers a page may read besides the simple
	// ones. Default Retry-After.
	Expose []string
	// MaxAge is how long browsers may cache a preflight. Default 10m.
	MaxAge time.Duration
}

// Handler wraps h with CORS: a request from an allowed origin gets
// Access-Control-Allow-Origin (and credentials are not allowed: the API
// key goes in Authorization, which the preflight allows); a preflight
// (OPTIONS with Access-Control-Request-Method) from an allowed origin is
// answered 204 with the allowed methods and headers, from any other origin
// 403, without reaching h. Requests without an Origin header pass through
// untouched. With no Origins, h is returned as is.
func (c CORS) Handler(h http.Handler) http.Handler {
	if len(c.Origins) == 0 {
		return h
	}
	methods := strings.Join(orDefault(c.Methods, "GET", "POST"), ", ")
	headers := strings.Join(orDefault(c.Headers, "Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"), ", ")
	expose := strings.Join(orDefault(c.Expose, "Retry-After"), ", ")
	maxAge := c.MaxAge
	if maxAge == 0 {
		maxAge = 10 * time.Minute
	}
	anyOrigin := slices.Contains(c.Origins, "*")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			h.ServeHTTP(w, r)
			return
		}
		allowed := anyOrigin || slices.Contains(c.Origins, origin)
		w.Header().Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			w.Header().Add("Vary", "Access-Control-Request-Method")
			w.Header().Add("Vary", "Access-Control-Request-Headers")
			if !allowed {
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Allow-Methods", methods)
			w.Header().Set("Access-Control-Allow-Headers", headers)
			w.Header().Set("Access-Control-Max-Age", strconv.Itoa(int(maxAge.Seconds())))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if allowed {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Expose-Headers", expose)
		}
		h.ServeHTTP(w, r)
	})
}

func orDefault(v []string, def ...string) []string {
	if len(v) == 0 {
		return def
	}
	return v
}
