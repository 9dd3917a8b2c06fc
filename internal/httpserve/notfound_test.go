package httpserve

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestJSONErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/things/{id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	h := JSONErrors(mux)
	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"POST", "/v1/things/a", http.StatusAccepted, "", ""},
		{"GET", "/v1/things/a", http.StatusMethodNotAllowed, "method_not_allowed", "POST"},
		{"GET", "/v1/nothing", http.StatusNotFound, "not_found", ""},
		{"POST", "/", http.StatusNotFound, "not_found", ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.status {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, rec.Code, tt.status)
			continue
		}
		if tt.code == "" {
			continue
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code != tt.code || e.Error.Message == "" ||
			rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s: %q %v (Allow %q), want code %q", tt.method, tt.path, rec.Body, err, rec.Header().Get("Allow"), tt.code)
		}
	}
}
