package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/telemetry"
)

// TestProfiles fetches a real CPU and heap profile from a pprof handler
// and names a service without one in its error, keeping the other's.
func TestProfiles(t *testing.T) {
	mux := http.NewServeMux()
	telemetry.MountPprof(mux)
	withPprof := httptest.NewServer(mux)
	defer withPprof.Close()
	without := httptest.NewServer(http.NotFoundHandler())
	defer without.Close()

	dir := t.TempDir()
	files, err := profiles(context.Background(), dir, "baseline", map[string]string{"egress": withPprof.URL, "ingress": without.URL}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "ingress cpu profile") {
		t.Fatalf("want an error naming ingress's cpu profile, got %v", err)
	}
	want := []string{filepath.Join(dir, "baseline.egress.cpu.pprof"), filepath.Join(dir, "baseline.egress.heap.pprof")}
	if strings.Join(files, ",") != strings.Join(want, ",") {
		t.Fatalf("files %v, want %v", files, want)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A profile is a gzipped protobuf (go tool pprof reads it).
		if len(b) < 20 || b[0] != 0x1f || b[1] != 0x8b {
			t.Fatalf("%s: %d bytes, not a gzipped profile", f, len(b))
		}
	}
}
