package healthcheck

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			_, _ = w.Write([]byte("ready\n"))
		default:
			http.Error(w, "not ready: joining the group\ngroup g, not joined", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/readyz"
	ln.Close()

	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		inStderr string
	}{
		{"default URL healthy", nil, 0, ""},
		{"explicit URL healthy", []string{srv.URL + "/readyz"}, 0, ""},
		{"503", []string{srv.URL + "/other"}, 1, "503 Service Unavailable: not ready: joining the group"},
		{"refused", []string{closed}, 1, "unhealthy"},
		{"not a URL", []string{"localhost:8080"}, 2, "not an http(s) URL"},
		{"two args", []string{srv.URL, srv.URL}, 2, "usage"},
		{"flag", []string{"-h"}, 2, "usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(tc.args, srv.URL+"/readyz", &out, &errOut)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stdout %q, stderr %q)", code, tc.code, out.String(), errOut.String())
			}
			if !strings.Contains(errOut.String(), tc.inStderr) {
				t.Errorf("stderr %q, want it to contain %q", errOut.String(), tc.inStderr)
			}
		})
	}
}
