package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
	"github.com/switchboard-llm/switchboard/internal/loadtest"
	"github.com/switchboard-llm/switchboard/internal/stack"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// options are loadtest's settings.
type options struct {
	scenarios               []string
	stack                   bool
	stackKafka              string
	bin, stackDir, out      string
	profile                 bool
	jsonOut, htmlOut, label string
	strict                  bool
	params                  loadtest.Params
	sc                      loadtest.SuiteConfig
	ext                     loadtest.Endpoints
	pids                    []string
	instances               stack.Instances
}

func newOptions(f *daemon.Flags) *options {
	o := &options{scenarios: []string{"baseline"}, bin: "bin", stackKafka: stack.KafkaDevbroker, params: loadtest.DefaultParams(),
		sc: loadtest.SuiteConfig{Driver: "http", Reader: "sse", Drain: 30 * time.Second},
		ext: loadtest.Endpoints{IngressURL: "http://127.0.0.1:8080", EgressURL: "http://127.0.0.1:8081", ModelsimURL: "http://127.0.0.1:8090",
			IngressGRPC: "127.0.0.1:8083", APIKey: loadtest.DevKey, Tenant: "dev"}}
	p := &o.params
	f.List(&o.scenarios, "scenarios", "comma-separated scenarios to run, or all ("+strings.Join(loadtest.SuiteNames(), ",")+"); only by name: soak, capacity, overload")
	f.Bool(&o.stack, "stack", "start a fresh local stack of the real binaries (from --bin) for each scenario; needed by chaos")
	f.String(&o.bin, "bin", "directory of the binaries for --stack (make build)")
	f.String(&o.stackKafka, "stack-kafka", "with --stack: the Kafka of the stacks: devbroker (started per scenario), apache (the running local cluster of make kafka-up; chaos kills its node kafka-1), or host:port,... of another cluster; on an existing cluster each scenario uses topics and a group of its own")
	f.Func("instances", "ingress=1,router-worker=1,egress=1", "with --stack: processes of each service, as service=count,... (ingress, router-worker, egress; each 1 to "+strconv.Itoa(stack.MaxInstances)+
		", router-workers at most the requests topics' partitions); clients spread over the ingress instances round-robin and conversations over the egress instances",
		func(v string) (err error) { o.instances, err = stack.ParseInstances(v); return err })
	f.String(&o.stackDir, "stack-dir", "where --stack keeps broker data and process logs (default: <out>/stack, or a temporary directory)")
	f.Bool(&o.profile, "profile", "with --stack and --out: run the services with --pprof and write each one's CPU profile of the measured window (from the warm-up's end, at most 30 s) and its heap profile to <out>/profiles/<scenario>.<process>.{cpu,heap}.pprof")
	f.String(&o.out, "out", "directory for the reports: <scenario>.json, suite.json, report.html, summary.txt")
	f.String(&o.jsonOut, "json", "also write the suite as JSON to this file")
	f.String(&o.htmlOut, "html", "also write the HTML report to this file")
	f.String(&o.label, "label", "conditions of the run, printed with every figure (e.g. \"loaded shared machine\")")
	f.Bool(&o.strict, "strict", "exit with status 1 when a check fails")
	f.String(&o.sc.Driver, "driver", "how requests enter: http (ingress), ws (ingress WebSockets), grpc (ingress's gRPC SubmitStream), kafka (straight to the requests topics) or openai (ingress's OpenAI-compatible API, interactive lane only)")
	f.String(&o.sc.Reader, "reader", "how answers are read: sse (egress), ws (egress WebSockets), grpc (egress's gRPC Subscribe), kafka (the results topic) or openai (the answers the openai driver's calls return)")
	f.String(&o.ext.IngressURL, "ingress", "ingress base URL (without --stack)")
	f.String(&o.ext.APIKey, "api-key", "API key sent to ingress and egress as a bearer token (without --stack)", daemon.FromEnv("SWITCHBOARD_API_KEY"))
	f.String(&o.ext.Tenant, "tenant", "the --api-key's tenant, written into requests by the kafka driver so egress shows their answers to that key (without --stack)", daemon.FromEnv("SWITCHBOARD_TENANT"))
	f.String(&o.ext.EgressURL, "egress", "egress base URL (without --stack)")
	f.String(&o.ext.IngressGRPC, "ingress-grpc", "ingress gRPC host:port, for --driver grpc (without --stack)")
	f.String(&o.ext.EgressGRPC, "egress-grpc", "egress gRPC host:port, for --reader grpc (without --stack; egress serves gRPC only with --grpc-addr)")
	f.String(&o.ext.ModelsimURL, "modelsim", "model simulator base URL for the direct reference calls; empty skips them (without --stack)")
	f.List(&o.pids, "pids", "processes of a running stack to sample CPU and memory of, as name=pid,name=pid (with --stack: all of its own)")
	f.Duration(&o.sc.Drain, "drain", "how long to wait for the last answers of a scenario")
	f.Duration(&p.Duration, "duration", "how long each scenario sends")
	f.Duration(&p.Warmup, "warmup", "leading time excluded from the figures (spike: none)")
	f.Float64(&p.Rate, "rate", "open-loop interactive requests per second (baseline, long-tail, batch, chaos)")
	f.Int(&p.Conversations, "conversations", "conversations sharing an open-loop rate")
	f.Int(&p.Users, "users", "spike: closed-loop users")
	f.Duration(&p.Ramp, "ramp", "spike: time over which the users arrive")
	f.Duration(&p.Think, "think", "spike: mean think time between an answer and the next request")
	f.Int(&p.BatchUsers, "batch-users", "batch: closed-loop batch-lane users without think time")
	f.Float64(&p.LongTailShare, "long-tail-share", "long-tail: share of model calls that are slow (--stack sets modelsim's)")
	f.Duration(&p.LongTailLatency, "long-tail-latency", "long-tail: latency of the slow model calls")
	f.Float64(&p.BadShare, "bad-share", "malformed: share of bad inputs")
	f.Float64(&p.MalformedRate, "malformed-rate", "malformed: requests per second, bad ones included")
	f.Int(&p.Retries, "retries", fmt.Sprintf("most resends of a request refused with 429 or 503 or whose connection failed, after its Retry-After, with the same Idempotency-Key; -1: the scenario's default (chaos %d, the others 0)", loadtest.ChaosRetries))
	f.Duration(&p.RetryBudget, "retry-budget", "bound on a request's resends: none later than this after its intended send time (0: 30s)")
	f.Duration(&p.ChaosDown, "chaos-down", "chaos: how long a killed process stays down (the backend: three times this)")
	f.Duration(&p.ModelLatency, "model-latency", "model latency (--stack sets modelsim's)")
	f.Duration(&p.ModelJitter, "model-jitter", "model latency jitter (--stack sets modelsim's)")
	f.Bool(&p.Stream, "stream", "ask for streamed answers (time to first chunk needs it)")
	f.Int(&p.SoakUsers, "soak-users", "soak: closed-loop users")
	f.Duration(&p.SoakThink, "soak-think", "soak: mean think time between an answer and the next request")
	f.Duration(&p.SoakDuration, "soak-duration", "soak: how long it sends (instead of --duration)")
	f.Float64(&p.CapacityStart, "capacity-start", "capacity: the first step's rate (requests per second)")
	f.Float64(&p.CapacityFactor, "capacity-factor", "capacity: each step's rate over the previous one's")
	f.Duration(&p.CapacityStepTime, "capacity-step", "capacity: how long each step sends (instead of --duration)")
	f.Int(&p.CapacityMaxSteps, "capacity-max-steps", "capacity: at most this many steps")
	f.Int(&p.CapacitySLOMS, "capacity-slo-ms", "capacity: the SLO's bound on the overhead over the ordered limit at p99")
	f.Float64(&p.CapacityMinSuccess, "capacity-min-success", "capacity: the SLO's least share of successful requests (0..1)")
	f.Float64(&p.OverloadRate, "overload-rate", "overload: the sustainable rate (requests per second) the steps multiply, e.g. the capacity scenario's")
	f.Func("overload-factors", "1,1.2,1.6", "overload: comma-separated multiples of --overload-rate, one step each",
		func(v string) (err error) { p.OverloadFactors, err = parseFactors(v); return err })
	f.Duration(&p.OverloadStepTime, "overload-step", "overload: how long each step sends (instead of --duration)")
	f.Int64(&p.OverloadLagHigh, "overload-lag-high", "overload: the stack's ingress --interactive-lag-high (records); 0: ingress's default")
	f.Duration(&p.OverloadQueueHigh, "overload-queue-high", "overload: the stack's ingress --interactive-queue-high; 0: ingress's default (off)")
	f.Int64(&p.OverloadLagLow, "overload-lag-low", "overload: the stack's ingress --interactive-lag-low (records); 0: half of --overload-lag-high")
	f.Duration(&p.OverloadQueue, "overload-queue", "overload: bound on the admitted requests' end-to-end p99 at every step: the lowest factor's step's p99 plus this much queueing")
	return o
}

// parseFactors parses a comma-separated list of numbers.
func parseFactors(v string) ([]float64, error) {
	var out []float64
	for _, s := range strings.Split(v, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", s)
		}
		out = append(out, f)
	}
	return out, nil
}

// run runs the suite: exit status 2 when it cannot, 1 when --strict and a
// check failed.
func (o *options) run(ctx context.Context, env *daemon.Env) error {
	sc, cleanup, err := o.suiteConfig(ctx, env)
	if err != nil {
		return daemon.ExitCode(2, err)
	}
	defer cleanup()
	suite, runErr := loadtest.RunSuite(ctx, sc)
	if suite != nil && len(suite.Reports) > 0 {
		if err := suite.WriteFiles(env.Stdout, o.out, o.jsonOut, o.htmlOut); err != nil {
			return daemon.ExitCode(2, errors.Join(runErr, err))
		}
	}
	if runErr != nil {
		return daemon.ExitCode(2, runErr)
	}
	if o.strict && suite.Failed() {
		return errors.New("a check failed")
	}
	return nil
}

// suiteConfig completes the suite's configuration from the settings and
// the daemon's environment; cleanup removes a temporary stack directory.
func (o *options) suiteConfig(ctx context.Context, env *daemon.Env) (loadtest.SuiteConfig, func(), error) {
	cleanup := func() {}
	sc := o.sc
	sc.Scenarios, sc.Params, sc.Label = o.scenarios, o.params, o.label
	if len(o.scenarios) == 1 && o.scenarios[0] == "all" {
		sc.Scenarios = loadtest.SuiteNames()
	}
	sc.Command = strings.Join(os.Args, " ")
	sc.ExternalPIDs = map[string]int{}
	for _, kv := range o.pids {
		name, pid, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil {
			return sc, cleanup, fmt.Errorf("--pids %q: want name=pid", kv)
		}
		sc.ExternalPIDs[name] = n
	}
	spec := env.Topics
	sc.External = o.ext
	sc.External.Kafka = loadtest.KafkaEndpoint{Brokers: env.Kafka.Brokers, Topics: loadtest.Topics{
		Interactive: spec.Name(topicspec.RequestsInteractive), Batch: spec.Name(topicspec.RequestsBatch),
		Results: spec.Name(topicspec.Results), DeadLetter: spec.Name(topicspec.DeadLetter)}}
	sc.KafkaOpts = func(brokers []string) []kgo.Opt {
		kc := env.Kafka // the shared connection settings (TLS, SASL), on these brokers
		kc.Brokers = brokers
		return kc.Opts(env.Logger)
	}
	fi, err := os.Stderr.Stat()
	sc.Progress = loadtest.ProgressSink{W: env.Stderr, TTY: err == nil && fi.Mode()&os.ModeCharDevice != 0}
	sc.OnReport = func(r *loadtest.Report) {
		r.WriteSummary(env.Stdout)
		if o.out != "" {
			if err := loadtest.WriteJSON(filepath.Join(o.out, r.Scenario+".json"), r); err != nil {
				env.Logger.Error("write report", "err", err)
			}
		}
	}
	if o.out != "" {
		if err := os.MkdirAll(o.out, 0o755); err != nil {
			return sc, cleanup, err
		}
	}
	if o.profile {
		if !o.stack || o.out == "" {
			return sc, cleanup, errors.New("--profile needs --stack and --out (it profiles the services it starts, into <out>/profiles)")
		}
		sc.ProfileDir = filepath.Join(o.out, "profiles")
	}
	if !o.stack {
		if o.instances != (stack.Instances{}) {
			return sc, cleanup, errors.New("--instances needs --stack (against a running stack, give its addresses instead)")
		}
		return sc, cleanup, nil
	}
	if err := checkRouters(o.instances.Router, spec); err != nil {
		return sc, cleanup, err
	}
	dir := o.stackDir
	if dir == "" && o.out != "" {
		dir = filepath.Join(o.out, "stack")
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "switchboard-loadtest-"); err != nil {
			return sc, cleanup, err
		}
		cleanup = func() { os.RemoveAll(dir) }
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return sc, cleanup, err
	}
	sc.Stack = loadtest.StackConfig{Bin: o.bin, Dir: abs, Logger: env.Logger}
	o.instances.Apply(&sc.Stack)
	if err := stack.UseKafka(ctx, &sc.Stack, o.stackKafka, ".", kafkalocal.Config{Security: os.Getenv("KAFKA_SECURITY"), PortOffset: envInt("KAFKA_PORT_OFFSET")}); err != nil {
		return sc, cleanup, err
	}
	sc.TopicPrefix = spec.Prefix
	return sc, cleanup, nil
}

// checkRouters refuses more router-workers than the requests topics have
// partitions: a group gives each partition to one member, so the extra
// workers would sit idle and the measurement would not show them.
func checkRouters(n int, spec *topicspec.Spec) error {
	most := int32(0)
	for _, name := range []string{topicspec.RequestsInteractive, topicspec.RequestsBatch} {
		if t, ok := spec.Topic(name); ok {
			most = max(most, t.Partitions)
		}
	}
	if most > 0 && int32(n) > most {
		return fmt.Errorf("--instances router-worker=%d: more than the %d partitions of the requests topics (topics.yaml); the extra workers would get no partition", n, most)
	}
	return nil
}

// envInt reads an integer environment variable (0 when unset or bad).
func envInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}
