package egress

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestWebhookRedirectIsRetriedNotFollowed: a 3xx is not followed (it could
// point anywhere, here at a metadata address) but counts as a failed
// attempt to retry, as docs/WEBHOOKS.md says. (Found in review: it was
// dead-lettered at once.)
func TestWebhookRedirectIsRetriedNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
	}))
	defer srv.Close()
	cfg := WebhookConfig{Enabled: true, Allow: []string{"127.0.0.1"}, Secret: []byte("secret-0123456789abc")}
	cfg.setDefaults()
	w, err := newWebhooks(cfg, []string{resultsTopic}, deadletterTopic, nil, []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer w.engine.Client().Close()
	_, permanent, err := w.post(t.Context(), srv.URL+"/x", cfg.Secret, []byte("{}"), "r", "0:0", 1)
	t.Logf("permanent=%v err=%v", permanent, err)
	if permanent {
		t.Errorf("a 302 answer is permanent (dead-lettered as webhook_rejected at once); the docs say redirects are retried")
	}
}
