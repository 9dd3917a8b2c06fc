package ingress

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// The HTTP API answers a CORS preflight only for the configured origins,
// and for none by default.
func TestCORSPreflight(t *testing.T) {
	cluster := newCluster(t)
	for _, tt := range []struct {
		name    string
		origins []string
		want    int
	}{
		{name: "default: none", want: http.StatusMethodNotAllowed},
		{name: "listed", origins: []string{"https://app.example"}, want: http.StatusNoContent},
		{name: "not listed", origins: []string{"https://other.example"}, want: http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := newIngress(t, cluster, func(c *Config) { c.CORSOrigins = tt.origins })
			req := httptest.NewRequest(http.MethodOptions, "/v1/conversations/c/messages", nil)
			req.Header.Set("Origin", "https://app.example")
			req.Header.Set("Access-Control-Request-Method", "POST")
			rec := httptest.NewRecorder()
			in.Handler().ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("preflight: got %d, want %d", rec.Code, tt.want)
			}
		})
	}
}
