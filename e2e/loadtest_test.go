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

// runScenario runs one scenario of the load-test tool, with the HTTP driver
// and the SSE reader, on a stack it starts itself from the built binaries.
func runScenario(t *testing.T, scenario string, p loadtest.Params) *loadtest.Suite {
	t.Helper()
	return runScenarioWith(t, scenario, p, "http", "sse")
}

// runScenarioWith runs one scenario with the given driver and reader.
func runScenarioWith(t *testing.T, scenario string, p loadtest.Params, driver, reader string) *loadtest.Suite {
	t.Helper()
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	suite, err := loadtest.RunSuite(t.Context(), loadtest.SuiteConfig{
		Scenarios: []string{scenario}, Params: p, Driver: driver, Reader: reader, Drain: 20 * time.Second,
		Stack: loadtest.StackConfig{Bin: filepath.Dir(bin["devbroker"]), Dir: t.TempDir()},
		External: loadtest.Endpoints{Kafka: loadtest.KafkaEndpoint{Topics: loadtest.Topics{
			Interactive: spec.Name(topicspec.RequestsInteractive), Batch: spec.Name(topicspec.RequestsBatch),
			Results: spec.Name(topicspec.Results), DeadLetter: spec.Name(topicspec.DeadLetter)}}},
		KafkaOpts: func(brokers []string) []kgo.Opt { return []kgo.Opt{kgo.SeedBrokers(brokers...)} },
	})
	if err != nil {
		t.Fatal(err)
	}
	return suite
}

// TestLoadtestSmoke runs a tiny baseline of the load-test tool against a
// stack it starts itself from the built binaries (ingress HTTP in, egress
// SSE out, direct model reference, lag and process sampling), and checks
// that every request is accounted for and the reports render.
func TestLoadtestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	p := loadtest.DefaultParams()
	p.Duration, p.Warmup, p.Rate, p.Conversations = 2*time.Second, 500*time.Millisecond, 50, 10
	p.ModelLatency, p.ModelJitter = 20*time.Millisecond, 5*time.Millisecond
	suite := runScenario(t, "baseline", p)
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

// TestLoadtestOpenAI runs a tiny baseline through ingress's
// OpenAI-compatible API, answers read from the calls themselves, into the
// same ledger.
func TestLoadtestOpenAI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	p := loadtest.DefaultParams()
	p.Duration, p.Warmup, p.Rate, p.Conversations = 2*time.Second, 500*time.Millisecond, 50, 10
	p.ModelLatency, p.ModelJitter = 20*time.Millisecond, 5*time.Millisecond
	r := runScenarioWith(t, "baseline", p, "openai", "openai").Reports[0]
	c := r.Classes["interactive"]
	if c == nil || c.Sent != 100 || c.Accepted != 100 || c.Lost != 0 || c.Duplicates != 0 || c.OrderViolations != 0 {
		t.Fatalf("interactive %+v: want 100 sent and accepted, none lost, duplicated or out of order", c)
	}
	if c.LatencyMS.Count == 0 || c.TTFCMS.Count == 0 || r.Driver != "openai" || r.Reader != "openai" {
		t.Errorf("missing distributions or names: latency %v ttfc %v driver %s reader %s", c.LatencyMS, c.TTFCMS, r.Driver, r.Reader)
	}
}

// TestLoadtestStreamFrontDoors runs a tiny baseline through each of the
// other front doors, into the same ledger: ingress's gRPC SubmitStream
// with egress's gRPC Subscribe streams, and ingress's WebSocket API with
// egress's WebSockets.
func TestLoadtestStreamFrontDoors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	for _, via := range []string{"grpc", "ws"} {
		t.Run(via, func(t *testing.T) {
			p := loadtest.DefaultParams()
			p.Duration, p.Warmup, p.Rate, p.Conversations = 2*time.Second, 500*time.Millisecond, 50, 10
			p.ModelLatency, p.ModelJitter = 20*time.Millisecond, 5*time.Millisecond
			r := runScenarioWith(t, "baseline", p, via, via).Reports[0]
			c := r.Classes["interactive"]
			if c == nil || c.Sent != 100 || c.Accepted != 100 || c.Lost != 0 || c.Duplicates != 0 || c.OrderViolations != 0 {
				t.Fatalf("interactive %+v: want 100 sent and accepted, none lost, duplicated or out of order", c)
			}
			if c.LatencyMS.Count == 0 || c.TTFCMS.Count == 0 || r.Driver != via || r.Reader != via {
				t.Errorf("missing distributions or names: latency %v ttfc %v driver %s reader %s", c.LatencyMS, c.TTFCMS, r.Driver, r.Reader)
			}
			for _, ch := range r.Checks {
				if !ch.Pass {
					t.Errorf("check failed: %s: %s", ch.Name, ch.Detail)
				}
			}
		})
	}
}

// TestLoadtestOrderedCalls runs the ordered-calls scenario briefly: several
// messages per conversation in one ingress batch or one WebSocket burst,
// stored in the order sent (read back from the requests topics) and
// answered in that order at the client.
func TestLoadtestOrderedCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	p := loadtest.DefaultParams()
	p.Duration, p.Warmup, p.Rate, p.Conversations = 2*time.Second, 500*time.Millisecond, 160, 20
	p.ModelLatency, p.ModelJitter = 10*time.Millisecond, 2*time.Millisecond
	r := runScenario(t, "ordered-calls", p).Reports[0]
	for _, class := range []string{"batch-calls", "stream-calls"} {
		c := r.Classes[class]
		if c == nil || c.Sent != 160 || c.Accepted != 160 || c.Stored != 160 || c.StoredOrderViolations != 0 || c.OrderViolations != 0 || c.Lost != 0 {
			t.Errorf("%s %+v: want 160 sent, accepted and stored, in order, none lost", class, c)
		}
	}
	for _, ch := range r.Checks {
		if !ch.Pass {
			t.Errorf("check failed: %s: %s", ch.Name, ch.Detail)
		}
	}
}

// TestLoadtestStackKillRestart checks the machinery the chaos scenario
// uses: a process killed with SIGKILL is restarted on its own ports and
// serves again, and the stack still carries a request end to end after
// its broker was killed and restarted.
func TestLoadtestStackKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	ctx := t.Context()
	st, err := loadtest.StartStack(ctx, loadtest.StackConfig{Bin: filepath.Dir(bin["devbroker"]), Dir: t.TempDir(),
		ModelLatency: 10 * time.Millisecond, ModelJitter: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before := st.PIDs()
	for _, name := range []string{loadtest.ProcRouter, loadtest.ProcDevbroker} {
		if err := st.KillRestart(ctx, name, 100*time.Millisecond); err != nil {
			t.Fatalf("kill and restart %s: %v", name, err)
		}
	}
	after := st.PIDs()
	for _, name := range []string{loadtest.ProcRouter, loadtest.ProcDevbroker} {
		if after[name] == 0 || after[name] == before[name] {
			t.Errorf("%s: PID %d before, %d after a restart", name, before[name], after[name])
		}
	}
	if after[loadtest.ProcEgress] != before[loadtest.ProcEgress] {
		t.Errorf("egress was restarted too")
	}
	if exited := st.Exited(); len(exited) != 0 {
		t.Errorf("exited: %v", exited)
	}
	// One request through the restarted stack, read from egress.
	drv, err := loadtest.NewDriver("http", loadtest.Endpoints{IngressURL: st.IngressURL, APIKey: st.APIKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	rd, err := loadtest.NewReader("sse", loadtest.Endpoints{EgressURL: st.EgressURL, APIKey: st.APIKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan loadtest.Answer, 16)
	if err := rd.Open(ctx, func(a loadtest.Answer) { got <- a }); err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if err := rd.Watch(ctx, "after-restart"); err != nil {
		t.Fatal(err)
	}
	// Ingress may answer 503 while its producer reconnects: retry a few times.
	var sendErr error
	for range 20 {
		if sendErr = drv.Send(ctx, loadtest.Message{ID: "m1", Conversation: "after-restart", Lane: "interactive", Model: "sim", Content: "hi"}); sendErr == nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if sendErr != nil {
		t.Fatalf("send after restarts: %v", sendErr)
	}
	timeout := time.After(30 * time.Second)
	for {
		select {
		case a := <-got:
			if a.ID == "m1" && a.Kind == loadtest.Final {
				return
			}
		case <-timeout:
			t.Fatal("no answer within 30s after the restarts")
		}
	}
}
