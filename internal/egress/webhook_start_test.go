package egress

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/webhook"
)

// TestWebhookStartWindow: a group with no committed offsets delivers the
// results of the last StartWindow, found by timestamp from the log's start,
// and none older; records written while it starts are all delivered.
// (Resetting to AfterMilli raced with records written during the listing
// and skipped a partition's first records now and then.)
func TestWebhookStartWindow(t *testing.T) {
	rc, srv := newReceiver(t, func(string, int) int { return http.StatusOK })
	rc.secret["/h"] = webhook.TenantKey([]byte("start-secret-0123456789"), "t")
	h := newHarness(t)
	old := hookFinal("conv-old", "t", "old", srv.URL+"/h")
	rec, err := envelope.EncodeResult(resultsTopic, old)
	if err != nil {
		t.Fatal(err)
	}
	rec.Timestamp = time.Now().Add(-time.Hour)
	if err := h.client.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	h.produce(hookFinal("conv-old", "t", "recent", srv.URL+"/h"))
	h.start(func(c *Config) {
		c.Webhooks = webhook.Config{Enabled: true, Allow: []string{srv.URL + "/"}, Secret: []byte("start-secret-0123456789"),
			StartWindow: 10 * time.Minute}
	})
	h.produce(hookFinal("conv-new", "t", "new", srv.URL+"/h"))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	waitFor(ctx, t, "the recent and new deliveries", func() bool { return len(rc.requests("/h")) >= 2 })
	time.Sleep(200 * time.Millisecond) // room for a wrong delivery of the old one
	got := map[string]bool{}
	for _, id := range rc.requests("/h") {
		got[id] = true
	}
	if !got["recent"] || !got["new"] || got["old"] || len(rc.requests("/h")) != 2 {
		t.Errorf("delivered %v; want recent and new, not old (an hour before the start, window 10m)", rc.requests("/h"))
	}
}
