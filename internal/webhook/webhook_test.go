package webhook

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/webhook/allowlist"
)

func newTestDeliverer(t *testing.T, allow ...string) *Deliverer {
	t.Helper()
	cfg := Config{Enabled: true, Allow: allow, Secret: []byte("secret-0123456789abc")}
	w, err := New(cfg, []string{"results"}, "deadletter", nil, []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")},
		prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.engine.Client().Close)
	return w
}

// TestRedirectIsRetriedNotFollowed: a 3xx is not followed (it could point
// anywhere, here at a metadata address) but counts as a failed attempt to
// retry, as docs/WEBHOOKS.md says. (Found in review: it was dead-lettered
// at once.)
func TestRedirectIsRetriedNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
	}))
	defer srv.Close()
	w := newTestDeliverer(t, "http://127.0.0.1:*")
	tg, err := w.target("t")
	if err != nil {
		t.Fatal(err)
	}
	_, permanent, err := w.post(t.Context(), tg, srv.URL+"/x", []byte("{}"), "r", "0:0", 1)
	if permanent || err == nil {
		t.Errorf("a 302 answer: permanent %v, %v; want a failed attempt to retry", permanent, err)
	}
}

// TestInternalAddressIsNotAllowed: a wildcard-allowed name that resolves
// to a loopback address is refused when connecting, as a permanent
// failure of reason webhook_not_allowed, without a request.
func TestInternalAddressIsNotAllowed(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	w := newTestDeliverer(t, "http://*.rebind.example:*")
	w.lookup = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	tg, err := w.target("t")
	if err != nil {
		t.Fatal(err)
	}
	_, permanent, err := w.post(t.Context(), tg, "http://hook.rebind.example:"+port+"/x", []byte("{}"), "r", "0:0", 1)
	if !permanent || !errors.Is(err, allowlist.ErrNotAllowed) || hits.Load() != 0 {
		t.Errorf("post = permanent %v, %v, %d requests; want a permanent ErrNotAllowed and no request", permanent, err, hits.Load())
	}
}

// TestTargets: tenants the file does not know share one cached client
// (records cannot grow the cache) but each signs with its own derived key.
func TestTargets(t *testing.T) {
	w := newTestDeliverer(t, "https://hooks.example.com")
	a, _ := w.target("a")
	b, _ := w.target("b")
	if a.http != b.http || string(a.key) == string(b.key) || len(w.targets) != 1 {
		t.Errorf("unknown tenants: shared client %v, same key %v, %d cached; want one client, two keys",
			a.http == b.http, string(a.key) == string(b.key), len(w.targets))
	}
	if string(a.key) != string(TenantKey(w.cfg.Secret, "a")) {
		t.Error("tenant a's key is not its derived key")
	}
}
