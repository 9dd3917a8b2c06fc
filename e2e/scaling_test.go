package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/loadtest"
	"github.com/switchboard-llm/switchboard/internal/stack"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// TestLoadtestScaledStack runs a short baseline of the load-test tool on a
// stack of two ingress, two router-workers (one group, static members) and
// two egress processes, as `loadtest --stack --instances
// ingress=2,router-worker=2,egress=2` does: requests go to the ingress
// instances in turn, conversations are followed on both egress instances,
// and the ledger must account for every request once, in order. Every
// instance must have taken a share of the work.
func TestLoadtestScaledStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	in, err := stack.ParseInstances("ingress=2,router-worker=2,egress=2")
	if err != nil {
		t.Fatal(err)
	}
	cfg := loadtest.StackConfig{Bin: filepath.Dir(bin["devbroker"]), Dir: t.TempDir()}
	in.Apply(&cfg)
	p := loadtest.DefaultParams()
	p.Duration, p.Warmup, p.Rate, p.Conversations = 3*time.Second, 500*time.Millisecond, 50, 24
	p.ModelLatency, p.ModelJitter = 20*time.Millisecond, 5*time.Millisecond
	suite, err := loadtest.RunSuite(t.Context(), loadtest.SuiteConfig{
		Scenarios: []string{"baseline"}, Params: p, Driver: "http", Reader: "sse", Drain: 20 * time.Second,
		Stack: cfg,
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
	if c == nil || c.Sent != 150 || c.Accepted != 150 || c.Lost != 0 || c.Duplicates != 0 || c.OrderViolations != 0 || c.Succeeded != c.Measured {
		t.Fatalf("interactive %+v: want 150 sent and accepted, every measured one answered, none lost, duplicated or out of order", c)
	}
	if got := r.Settings["instances"]; got != "ingress=2,router-worker=2,egress=2" {
		t.Errorf("report's instances %q", got)
	}
	for _, name := range []string{"ingress", "ingress-2", "router-worker", "router-worker-2", "egress", "egress-2"} {
		if r.Processes[name] == nil {
			t.Errorf("no samples of process %s: %v", name, r.Processes)
		}
	}
	shared := false
	for _, ch := range r.Checks {
		if !ch.Pass {
			t.Errorf("check failed: %s: %s", ch.Name, ch.Detail)
		}
		if ch.Name == "every instance took a share" {
			shared = true
			t.Log(ch.Detail)
			if strings.Count(ch.Detail, "/") != 3 {
				t.Errorf("share check covers not all three services: %s", ch.Detail)
			}
		}
	}
	if !shared {
		t.Error("no share check in the report")
	}
}
