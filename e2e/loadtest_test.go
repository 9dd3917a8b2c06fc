package e2e

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/loadtest"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// TestLoadtestSmoke runs a tiny baseline of the load-test tool against a
// stack it starts itself from the built binaries (ingress HTTP in, egress
// SSE out, direct model reference, lag and process sampling), and checks
// that every request is accounted for and the reports render.
func TestLoadtestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	p := loadtest.DefaultParams()
	p.Duration, p.Warmup, p.Rate, p.Conversations = 2*time.Second, 500*time.Millisecond, 50, 10
	p.ModelLatency, p.ModelJitter = 20*time.Millisecond, 5*time.Millisecond
	suite, err := loadtest.RunSuite(t.Context(), loadtest.SuiteConfig{
		Scenarios: []string{"baseline"}, Params: p, Driver: "http", Reader: "sse", Drain: 20 * time.Second,
		Stack: loadtest.StackConfig{Bin: filepath.Dir(bin["devbroker"]), Dir: t.TempDir()},
		External: loadtest.Endpoints{Kafka: loadtest.KafkaEndpoint{Topics: loadtest.Topics{
			Interactive: spec.Name(topicspec.RequestsInteractive), Batch: spec.Name(topicspec.RequestsBatch),
			Results: spec.Name(topicspec.Results), DeadLetter: spec.Name(topicspec.DeadLetter)}}},
		KafkaOpts: func(brokers []string) []kgo.Opt { return []kgo.Opt{kgo.SeedBrokers(brokers...)} },
	})
	if err != nil {
		t.Fatal(err)
	}
	r := suite.Reports[0]
	c := r.Classes["interactive"]
	if c == nil || c.Sent != 100 || c.Accepted != 100 || c.Lost != 0 || c.Duplicates != 0 || c.OrderViolations != 0 {
		t.Fatalf("interactive %+v: want 100 sent and accepted, none lost, duplicated or out of order", c)
	}
	if c.LatencyMS.Count == 0 || c.TTFCMS.Count == 0 || c.OverheadMS.Count == 0 || r.Direct == nil || r.Direct.LatencyMS.Count == 0 {
		t.Errorf("missing distributions: latency %v ttfc %v overhead %v direct %+v", c.LatencyMS, c.TTFCMS, c.OverheadMS, r.Direct)
	}
	if r.Processes[loadtest.ProcRouter] == nil || len(r.Series.Lag) == 0 {
		t.Errorf("no process or lag samples: %v %v", r.Processes, r.Series.Lag)
	}
	for _, ch := range r.Checks {
		if !ch.Pass {
			t.Errorf("check failed: %s: %s", ch.Name, ch.Detail)
		}
	}
	var html bytes.Buffer
	if err := loadtest.WriteHTML(&html, suite); err != nil || !strings.Contains(html.String(), "<svg") {
		t.Errorf("HTML report: %v", err)
	}
}
