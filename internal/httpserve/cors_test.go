package httpserve

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCORS(t *testing.T) {
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	allow := CORS{Origins: []string{"https://app.example"}}.Handler(inner)
	none := CORS{}.Handler(inner)
	tests := []struct {
		name       string
		h          http.Handler
		method     string
		origin     string
		preflight  bool
		wantStatus int
		wantAllow  string
	}{
		{name: "no origin", h: allow, method: "POST", wantStatus: 202},
		{name: "allowed origin", h: allow, method: "POST", origin: "https://app.example", wantStatus: 202, wantAllow: "https://app.example"},
		{name: "other origin", h: allow, method: "POST", origin: "https://evil.example", wantStatus: 202},
		{name: "preflight allowed", h: allow, method: "OPTIONS", origin: "https://app.example", preflight: true, wantStatus: 204, wantAllow: "https://app.example"},
		{name: "preflight refused", h: allow, method: "OPTIONS", origin: "https://evil.example", preflight: true, wantStatus: 403},
		{name: "none by default", h: none, method: "POST", origin: "https://app.example", wantStatus: 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/v1/x", nil)
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.preflight {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			}
			rec := httptest.NewRecorder()
			tt.h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status: got %d, want %d", rec.Code, tt.wantStatus)
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != tt.wantAllow {
				t.Errorf("Access-Control-Allow-Origin: got %q, want %q", got, tt.wantAllow)
			}
			if tt.wantStatus == 204 && rec.Header().Get("Access-Control-Allow-Headers") == "" {
				t.Error("preflight answer without Access-Control-Allow-Headers")
			}
		})
	}
}
