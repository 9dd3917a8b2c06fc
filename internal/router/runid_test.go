package router

import (
	"testing"
	"time"
)

// TestEveryProcessingHasItsOwnRunID: all results of one processing of a
// request share a run_id, and processing the same request again (as after
// a crash) gives a new one, so readers can tell the two runs apart. The
// request's webhook_url is copied into its results.
func TestEveryProcessingHasItsOwnRunID(t *testing.T) {
	h := newHarness(t)
	// Without the seen sets the second record is processed as a rerun
	// would be (TestRedeliveredRecordRunsAgain reruns one record itself).
	h.run(h.modelsim(2*time.Millisecond), func(c *Config) { c.DedupeWindow = -1 })
	req := request("rerun", 0, true)
	req.WebhookUrl = "https://hooks.example/x"
	h.produce(req, req) // the same request twice: two processings
	res, _ := h.collect(2)
	runs := map[string]int{}
	var order []string
	for _, r := range res {
		if r.GetRunId() == "" {
			t.Fatalf("result without run_id: %v", r)
		}
		if r.GetWebhookUrl() != req.GetWebhookUrl() {
			t.Errorf("webhook_url = %q, want %q", r.GetWebhookUrl(), req.GetWebhookUrl())
		}
		if runs[r.GetRunId()] == 0 {
			order = append(order, r.GetRunId())
		}
		runs[r.GetRunId()]++
	}
	if len(order) != 2 {
		t.Fatalf("results carry %d run IDs, want 2 (one per processing): %v", len(order), runs)
	}
	for _, r := range res {
		if r.GetChunk() == nil && runs[r.GetRunId()] < 2 {
			t.Errorf("run %s has its terminal result but no chunks", r.GetRunId())
		}
	}
}
