package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/stack"
)

// Params scale the scenarios. The zero value of a field means its default
// (DefaultParams); the bench suite uses the defaults.
type Params struct {
	// Duration is how long each scenario sends; Warmup is excluded from
	// its figures (not for spike, whose ramp is the point).
	Duration, Warmup time.Duration
	// Rate is the open-loop interactive rate; Conversations share it.
	Rate          float64
	Conversations int
	// Users, Ramp and Think shape the spike's closed loop.
	Users       int
	Ramp, Think time.Duration
	// BatchUsers are the batch scenario's closed-loop batch users (no
	// think time: as much as the batch lane takes).
	BatchUsers int
	// LongTailShare of model calls take LongTailLatency in long-tail.
	LongTailShare   float64
	LongTailLatency time.Duration
	// BadShare of requests are bad inputs in malformed, sent at
	// MalformedRate.
	BadShare      float64
	MalformedRate float64
	// ChaosDown is how long a killed process stays down.
	ChaosDown time.Duration
	// ModelLatency and ModelJitter are the simulated model's.
	ModelLatency, ModelJitter time.Duration
	// Stream asks for streamed answers (chunks, time to first chunk).
	Stream bool
	// SoakUsers closed-loop users think SoakThink between answers for
	// SoakDuration in soak.
	SoakUsers    int
	SoakThink    time.Duration
	SoakDuration time.Duration
	// The capacity steps (capacity.go): from CapacityStart req/s, ×
	// CapacityFactor each step of CapacityStepTime, at most
	// CapacityMaxSteps, until a step misses the SLO: overhead over the
	// ordered limit p99 ≤ CapacitySLOMS, success ≥ CapacityMinSuccess.
	CapacityStart, CapacityFactor float64
	CapacityStepTime              time.Duration
	CapacityMaxSteps              int
	CapacitySLOMS                 int
	CapacityMinSuccess            float64
	// Retries is the most resends of a refused request (retry.go);
	// negative: the scenario's default (chaos ChaosRetries, the others
	// none). Unlike the other fields, 0 means no resends; DefaultParams
	// has -1. RetryBudget bounds a request's resends in time (default
	// 30s from its intended send time).
	Retries     int
	RetryBudget time.Duration
	// The overload steps (overload.go): OverloadRate (a sustainable
	// rate) times each of OverloadFactors, each OverloadStepTime long;
	// the admitted requests' end-to-end p99 must stay within OverloadQueue
	// of the lowest factor's step's.
	OverloadRate     float64
	OverloadFactors  []float64
	OverloadStepTime time.Duration
	OverloadQueue    time.Duration
	// OverloadLagHigh and OverloadLagLow, when positive, are the stack's
	// ingress --interactive-lag-high and --interactive-lag-low in the
	// overload steps; 0 keeps ingress's default (the low mark: half the
	// high one).
	OverloadLagHigh, OverloadLagLow int64
	// OverloadQueueHigh, when positive, is the stack's ingress
	// --interactive-queue-high in the overload steps.
	OverloadQueueHigh time.Duration
}

// ChaosRetries is the chaos scenario's default of Params.Retries: the
// load test resends refused requests as the README tells clients to, and
// reports success before and after the resends.
const ChaosRetries = 10

// DefaultParams are the bench suite's settings.
func DefaultParams() Params {
	return Params{
		Duration: 20 * time.Second, Warmup: 3 * time.Second, Rate: 1000, Conversations: 1000,
		Users: 5000, Ramp: 3 * time.Second, Think: 4 * time.Second, BatchUsers: 500,
		LongTailShare: 0.1, LongTailLatency: 1500 * time.Millisecond, BadShare: 0.2, MalformedRate: 200,
		ChaosDown: time.Second, ModelLatency: 200 * time.Millisecond, ModelJitter: 20 * time.Millisecond, Stream: true,
		SoakUsers: 500, SoakThink: time.Second, SoakDuration: time.Hour,
		CapacityStart: 200, CapacityFactor: 1.2, CapacityStepTime: 20 * time.Second, CapacityMaxSteps: 16,
		CapacitySLOMS: 120, CapacityMinSuccess: 0.999, Retries: -1,
		OverloadRate: 1200, OverloadFactors: []float64{1, 1.2, 1.6}, OverloadStepTime: 30 * time.Second, OverloadQueue: 2 * time.Second,
	}
}

// Scenario is a named, bounded load pattern.
type Scenario struct {
	Name, Description string
	// NeedsStack: the scenario acts on processes (chaos) and runs only on
	// a stack the load test started.
	NeedsStack bool
	// Explicit scenarios run only when named, not in "all" (long runs).
	Explicit bool
	// retries is the scenario's default of Params.Retries.
	retries int
	// stack adjusts the stack for the scenario (e.g. a long model tail).
	stack func(p Params, c *StackConfig)
	// callers name the CallSenders (NewCallSender) the scenario's loads
	// send through.
	callers []string
	// build fills the run's loads, faults and settings.
	build func(p Params, c *Config, st *Stack)
}

// Scenarios are the scenarios by name, in suite order.
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "baseline", Description: "open loop: a steady interactive rate across many conversations",
			build: func(p Params, c *Config, _ *Stack) {
				c.Loads = []Load{{Class: classInteractive, Rate: p.Rate, Conversations: p.Conversations}}
			}},
		{Name: "spike", Description: "closed loop: 0 to N users within the ramp, each waiting for its answer and thinking before the next",
			build: func(p Params, c *Config, _ *Stack) {
				c.Warmup = 0
				c.Loads = []Load{{Class: classInteractive, Users: p.Users, Ramp: p.Ramp, Think: p.Think}}
			}},
		{Name: "long-tail", Description: "baseline with a share of model calls far slower than the rest",
			stack: func(p Params, s *StackConfig) {
				s.LongTailFraction, s.LongTailLatency = p.LongTailShare, p.LongTailLatency
			},
			build: func(p Params, c *Config, _ *Stack) {
				c.Loads = []Load{{Class: classInteractive, Rate: p.Rate, Conversations: p.Conversations}}
			}},
		{Name: "batch", Description: "baseline interactive load while batch users push the batch lane as hard as it goes",
			build: func(p Params, c *Config, _ *Stack) {
				c.Loads = []Load{
					{Class: classInteractive, Rate: p.Rate, Conversations: p.Conversations},
					{Class: classBatch, Lane: envelope.LaneBatch, Users: p.BatchUsers},
				}
			}},
		{Name: "mixed", Description: "long-tail and batch together: interactive load with a share of slow model calls while batch users push the batch lane",
			stack: func(p Params, s *StackConfig) {
				s.LongTailFraction, s.LongTailLatency = p.LongTailShare, p.LongTailLatency
			},
			build: func(p Params, c *Config, _ *Stack) {
				c.Loads = []Load{
					{Class: classInteractive, Rate: p.Rate, Conversations: p.Conversations},
					{Class: classBatch, Lane: envelope.LaneBatch, Users: p.BatchUsers},
				}
			}},
		{Name: "chaos", Description: "baseline while router-worker, egress and devbroker (or one node of a local Apache Kafka cluster) are killed with SIGKILL and restarted, and the model backend goes down",
			NeedsStack: true, retries: ChaosRetries,
			build: func(p Params, c *Config, st *Stack) {
				c.Loads = []Load{{Class: classInteractive, Rate: p.Rate, Conversations: p.Conversations}}
				c.AllowDuplicates = true
				kill := func(name string) func(ctx context.Context) error {
					return func(ctx context.Context) error { return st.KillRestart(ctx, name, p.ChaosDown) }
				}
				d := p.Duration
				c.Faults = []Fault{
					{At: d * 2 / 10, Name: fmt.Sprintf("kill -9 router-worker, restart after %v", p.ChaosDown), Do: kill(ProcRouter)},
					{At: d * 4 / 10, Name: fmt.Sprintf("kill -9 egress, restart after %v", p.ChaosDown), Do: kill(ProcEgress)},
					{At: d * 6 / 10, Name: fmt.Sprintf("kill -9 %s, restart after %v", st.BrokerProcess(), p.ChaosDown), Do: kill(st.BrokerProcess())},
					{At: d * 8 / 10, Name: fmt.Sprintf("model backend down (kill -9 modelsim) for %v", 3*p.ChaosDown), Do: func(ctx context.Context) error {
						return st.KillRestart(ctx, ProcModelsim, 3*p.ChaosDown)
					}},
				}
			}},
		{Name: "ordered-calls", Description: "several messages per conversation in one call: ingress batches (POST /v1/messages:batch) and bursts on WebSocket streams, two conversations interleaved in each call of eight; order checked at the client and in the requests topic",
			callers: []string{"http-batch", "ws"},
			build: func(p Params, c *Config, _ *Stack) {
				convs := max(2, p.Conversations/2)
				c.Loads = []Load{
					{Class: "batch-calls", Rate: p.Rate / 2, Conversations: convs, PerCall: 8, ConvsPerCall: 2, Via: "http-batch"},
					{Class: "stream-calls", Rate: p.Rate / 2, Conversations: convs, PerCall: 8, ConvsPerCall: 2, Via: "ws"},
				}
				c.CheckStoredOrder = c.KafkaOpts != nil
			}},
		{Name: "soak", Explicit: true,
			Description: "closed loop held for a long time (the seed's baseline: 500 users for an hour): resident memory, goroutines, lag and p99 must stay flat",
			build: func(p Params, c *Config, _ *Stack) {
				c.Duration = p.SoakDuration
				c.Loads = []Load{{Class: classInteractive, Users: p.SoakUsers, Ramp: 10 * time.Second, Think: p.SoakThink}}
			}},
		{Name: "capacity", Explicit: true,
			Description: "baseline steps at a rate rising 20% a step, each on a fresh stack, until the SLO (overhead over the ordered limit p99, success) breaks: the highest sustainable rate and what limited it first",
			build: func(p Params, c *Config, _ *Stack) {
				c.Loads = []Load{{Class: classInteractive, Rate: p.Rate, Conversations: p.Conversations}}
			}},
		{Name: "overload", Explicit: true,
			Description: "baseline steps at a sustainable rate and past it (1.0, 1.2, 1.6 times), each on a fresh stack: the excess should be shed while goodput holds at least 95% of the peak and admitted requests keep a bounded latency",
			stack: func(p Params, s *StackConfig) {
				if p.OverloadLagHigh > 0 {
					s.IngressArgs = append(defaultIngressArgs(), "--interactive-lag-high", fmt.Sprint(p.OverloadLagHigh),
						"--interactive-lag-low", fmt.Sprint(p.OverloadLagLow))
				}
				if p.OverloadQueueHigh > 0 {
					if s.IngressArgs == nil {
						s.IngressArgs = defaultIngressArgs()
					}
					s.IngressArgs = append(s.IngressArgs, "--interactive-queue-high", p.OverloadQueueHigh.String())
				}
			},
			build: func(p Params, c *Config, _ *Stack) {
				c.Loads = []Load{{Class: classInteractive, Rate: p.Rate, Conversations: p.Conversations}}
			}},
		{Name: "malformed", Description: "a share of bad inputs (wrong JSON, huge bodies, bad UTF-8, unknown models, garbage records straight to Kafka) among good ones",
			build: func(p Params, c *Config, _ *Stack) {
				c.Loads = []Load{{Class: classInteractive, Rate: p.MalformedRate, Conversations: min(p.Conversations, 200), BadShare: p.BadShare}}
			}},
	}
}

// ScenarioByName finds a scenario.
func ScenarioByName(name string) (Scenario, bool) {
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// Endpoints are where an external stack (one the load test did not start)
// listens.
type Endpoints struct {
	IngressURL, EgressURL, ModelsimURL string
	// IngressGRPC and EgressGRPC are the gRPC APIs' host:port (the grpc
	// driver and reader); empty: not served.
	IngressGRPC, EgressGRPC string
	// MoreIngress and MoreEgress are further instances of ingress and
	// egress beside the ones above (a stack of several): the ingress
	// drivers send each request to the next instance in turn, as a
	// round-robin load balancer would, and the stream readers follow each
	// conversation on one egress instance, spread evenly.
	MoreIngress, MoreEgress []Instance
	// APIKey is sent as a bearer token to ingress and egress.
	APIKey string
	// Tenant is the APIKey's tenant, which the kafka driver writes into
	// its requests (as ingress would) so that egress shows their answers
	// to the SSE reader. Empty: "default".
	Tenant string
	Kafka  KafkaEndpoint
}

// KafkaEndpoint reaches the cluster; Brokers empty means no Kafka access
// (no lag, no dead letters, no Kafka driver or reader).
type KafkaEndpoint struct {
	Brokers []string
	Topics  Topics
}

// SuiteConfig runs scenarios one after another.
type SuiteConfig struct {
	Scenarios []string
	Params    Params
	// Driver is one of DriverNames; Reader one of ReaderNames.
	Driver, Reader string
	// Stack, when Bin is set, starts a fresh local stack per scenario
	// under Dir/<scenario>. Otherwise External is used.
	Stack    StackConfig
	External Endpoints
	// TopicPrefix is the prefix of External's topic names (topics.yaml's),
	// replaced by a scenario's own on an external cluster.
	TopicPrefix string
	// ExternalPIDs are processes of an external stack to sample, by name.
	ExternalPIDs map[string]int
	// KafkaOpts builds client options for brokers (logging, client ID).
	KafkaOpts func(brokers []string) []kgo.Opt
	// Label, Command, Progress and ProgressTTY go to every run.
	Label, Command string
	Progress       ProgressSink
	// Drain bounds the wait for the last answers of each scenario.
	Drain time.Duration
	// OnReport is called after each scenario.
	OnReport func(*Report)
	// ProfileDir, with a stack, runs its services with --pprof and writes
	// their CPU and heap profiles of each scenario's measured window
	// there (Config.ProfileDir).
	ProfileDir string
}

// ProgressSink receives the live progress line; TTY redraws one line.
type ProgressSink struct {
	W   io.Writer
	TTY bool
}

func selfPID() int { return os.Getpid() }

// RunSuite runs the configured scenarios and returns their reports. A
// scenario that cannot run (its stack fails to start) ends the suite with
// an error, returning the reports so far.
func RunSuite(ctx context.Context, sc SuiteConfig) (*Suite, error) {
	suite := &Suite{Label: sc.Label, Command: sc.Command, StartedAt: time.Now().UTC()}
	if err := sc.Params.validate(sc.Scenarios); err != nil {
		return suite, err
	}
	for _, name := range sc.Scenarios {
		s, ok := ScenarioByName(name)
		if !ok {
			return suite, fmt.Errorf("unknown scenario %q (have %s)", name, strings.Join(scenarioNames(), ", "))
		}
		if steps := stepped(name); steps != nil {
			reps, err := steps(ctx, sc, s)
			for _, rep := range reps {
				suite.Reports = append(suite.Reports, rep)
				if sc.OnReport != nil {
					sc.OnReport(rep)
				}
			}
			if err != nil {
				return suite, fmt.Errorf("scenario %s: %w", name, err)
			}
			continue
		}
		rep, err := runScenario(ctx, sc, s)
		if err != nil {
			return suite, fmt.Errorf("scenario %s: %w", name, err)
		}
		suite.Reports = append(suite.Reports, rep)
		if sc.OnReport != nil {
			sc.OnReport(rep)
		}
	}
	addComparisons(suite)
	return suite, nil
}

// stepped returns the step runner of a scenario run as several steps on
// fresh stacks, nil for the others.
func stepped(name string) func(context.Context, SuiteConfig, Scenario) ([]*Report, error) {
	switch name {
	case "capacity":
		return capacitySteps
	case "overload":
		return overloadSteps
	}
	return nil
}

// validate checks the parameters of the long scenarios named.
func (p Params) validate(names []string) error {
	if slices.Contains(names, "soak") && (p.SoakUsers <= 0 || p.SoakDuration <= p.Warmup || p.SoakThink < 0) {
		return fmt.Errorf("soak: --soak-users must be positive, --soak-duration longer than --warmup (%v), --soak-think not negative", p.Warmup)
	}
	if slices.Contains(names, "capacity") {
		switch {
		case p.CapacityStart <= 0 || p.CapacityFactor <= 1:
			return errors.New("capacity: --capacity-start must be positive and --capacity-factor above 1")
		case p.CapacityMaxSteps < 1 || p.CapacityStepTime <= p.Warmup:
			return fmt.Errorf("capacity: --capacity-max-steps must be at least 1 and --capacity-step longer than --warmup (%v)", p.Warmup)
		case p.CapacitySLOMS <= 0 || p.CapacityMinSuccess <= 0 || p.CapacityMinSuccess > 1:
			return errors.New("capacity: --capacity-slo-ms must be positive and --capacity-min-success in (0, 1]")
		}
	}
	if slices.Contains(names, "overload") {
		switch {
		case p.OverloadRate <= 0 || len(p.OverloadFactors) == 0 || slices.ContainsFunc(p.OverloadFactors, func(f float64) bool { return f <= 0 }):
			return errors.New("overload: --overload-rate must be positive and --overload-factors a non-empty list of positive factors")
		case p.OverloadStepTime <= p.Warmup:
			return fmt.Errorf("overload: --overload-step must be longer than --warmup (%v)", p.Warmup)
		case p.OverloadQueue <= 0:
			return errors.New("overload: --overload-queue must be positive")
		case p.OverloadQueueHigh < 0:
			return errors.New("overload: --overload-queue-high must not be negative")
		case p.OverloadLagHigh < 0 || p.OverloadLagLow < 0 || (p.OverloadLagLow > 0 && p.OverloadLagLow >= p.OverloadLagHigh):
			return errors.New("overload: --overload-lag-low and --overload-lag-high must not be negative, and a low mark needs a higher high mark")
		}
	}
	return nil
}

func scenarioNames() []string {
	var out []string
	for _, s := range Scenarios() {
		out = append(out, s.Name)
	}
	return out
}

// SuiteNames are the scenarios of "all": every one but the explicit ones.
func SuiteNames() []string {
	var out []string
	for _, s := range Scenarios() {
		if !s.Explicit {
			out = append(out, s.Name)
		}
	}
	return out
}

func runScenario(ctx context.Context, sc SuiteConfig, s Scenario) (*Report, error) {
	p := sc.Params
	ep := sc.External
	var st *Stack
	group := ""
	if sc.Stack.Bin != "" {
		cfg := sc.Stack
		cfg.Dir = sc.Stack.Dir + "/" + s.Name
		cfg.ModelLatency, cfg.ModelJitter = p.ModelLatency, p.ModelJitter
		if sc.ProfileDir != "" {
			if cfg.CommonArgs == nil {
				cfg.CommonArgs = defaultCommonArgs()
			}
			cfg.CommonArgs = append(slices.Clone(cfg.CommonArgs), "--pprof")
		}
		if s.stack != nil {
			s.stack(p, &cfg)
		}
		topics := sc.External.Kafka.Topics
		if cfg.Brokers != "" && cfg.TopicPrefix == "" {
			// An external cluster outlives the scenario: its topics and
			// group are the scenario's own, so earlier runs' records and
			// offsets do not count.
			run := fmt.Sprintf("lt%d-%s", time.Now().Unix(), s.Name)
			cfg.TopicPrefix, cfg.RouterGroup = run+".", run+"-router"
			topics = topics.withPrefix(sc.TopicPrefix, cfg.TopicPrefix)
		}
		var err error
		if st, err = StartStack(ctx, cfg); err != nil {
			return nil, err
		}
		defer st.Close()
		if cfg.TopicPrefix != "" && sc.Stack.TopicPrefix == "" {
			// The scenario's own topics on a cluster that outlives it:
			// deleted after the stack stopped (defers run last first).
			defer deleteTopics(ctx, sc.KafkaOpts(strings.Split(cfg.Brokers, ",")), topics)
		}
		group = cfg.RouterGroup
		ep = Endpoints{IngressURL: st.IngressURL, EgressURL: st.EgressURL, ModelsimURL: st.ModelsimURL, APIKey: st.APIKey, Tenant: st.Tenant,
			IngressGRPC: st.IngressGRPC, EgressGRPC: st.EgressGRPC, MoreIngress: more(st.Ingresses), MoreEgress: more(st.Egresses),
			Kafka: KafkaEndpoint{Brokers: strings.Split(st.Brokers, ","), Topics: topics}}
	} else if s.NeedsStack {
		return nil, fmt.Errorf("%s acts on processes and needs a stack the load test starts (--stack)", s.Name)
	}
	var kopts []kgo.Opt
	if len(ep.Kafka.Brokers) > 0 {
		kopts = sc.KafkaOpts(ep.Kafka.Brokers)
	}
	drv, err := NewDriver(sc.Driver, ep, kopts)
	if err != nil {
		return nil, err
	}
	defer drv.Close()
	rd, err := ReaderFor(sc.Reader, drv, ep, kopts)
	if err != nil {
		return nil, err
	}
	cfg := Config{
		Scenario: s.Name, Description: s.Description, Label: sc.Label, Command: sc.Command,
		Driver: drv, Reader: rd, Duration: p.Duration, Warmup: p.Warmup, Drain: sc.Drain, Stream: p.Stream,
		ModelURL: ep.ModelsimURL, KafkaOpts: kopts, Topics: ep.Kafka.Topics, Group: group,
		Progress: sc.Progress.W, ProgressTTY: sc.Progress.TTY, Retry: p.retry(s),
	}
	if s.Name == "malformed" && len(kopts) > 0 && sc.Driver != nameKafka {
		kd, err := newKafkaDriver(kopts, ep.Kafka.Topics, ep.Tenant)
		if err != nil {
			return nil, err
		}
		defer kd.Close()
		cfg.BadKafka = kd
	}
	for _, name := range s.callers {
		cs, err := NewCallSender(name, ep)
		if err != nil {
			return nil, err
		}
		defer cs.Close()
		if cfg.Callers == nil {
			cfg.Callers = map[string]CallSender{}
		}
		cfg.Callers[name] = cs
	}
	s.build(p, &cfg, st)
	cfg.Processes = func() map[string]int {
		pids := map[string]int{"loadtest": selfPID()}
		if st != nil {
			maps.Copy(pids, st.PIDs())
		} else {
			maps.Copy(pids, sc.ExternalPIDs)
		}
		return pids
	}
	cfg.Settings = settings(p, s, sc)
	if st != nil {
		cfg.MetricsURLs = metricsURLs(st)
		cfg.ProfileDir = sc.ProfileDir
	}
	rep, err := Run(ctx, cfg)
	if err != nil {
		return nil, err
	}
	scenarioChecks(ctx, s, st, rep)
	return rep, nil
}

// retry is the scenario's retry policy under p.
func (p Params) retry(s Scenario) Retry {
	r := Retry{Max: p.Retries, Budget: p.RetryBudget}
	if r.Max < 0 {
		r.Max = s.retries
	}
	return r
}

// metricsURLs are the admin URLs of every service instance of st, by
// process name.
func metricsURLs(st *Stack) map[string]string {
	m := map[string]string{}
	for _, eps := range [][]stack.Endpoint{st.Ingresses, st.Egresses} {
		for _, ep := range eps {
			m[ep.Name] = ep.AdminURL
		}
	}
	for i, u := range st.RouterURLs {
		name := ProcRouter
		if i > 0 {
			name = fmt.Sprintf("%s-%d", ProcRouter, i+1)
		}
		m[name] = u
	}
	return m
}

// scenarioChecks adds the checks that depend on the stack and the
// scenario to rep.
func scenarioChecks(ctx context.Context, s Scenario, st *Stack, rep *Report) {
	if st != nil {
		exited := st.Exited()
		rep.Checks = append(rep.Checks, Check{Name: "no process crashed", Pass: len(exited) == 0,
			Detail: fmt.Sprintf("not running at the end: %v", exited)})
		// Chaos restarts processes, and a restarted one's counters start
		// again: its share would not be the run's.
		if ch, ok := shareCheck(ctx, st); ok && s.Name != "chaos" {
			rep.Checks = append(rep.Checks, ch)
		}
	}
	if s.Name == "soak" {
		rep.Checks = append(rep.Checks, soakChecks(rep)...)
	}
	if s.Name == "malformed" {
		c := rep.Classes[classInteractive]
		ok := c != nil && c.Lost == 0 && c.Failed == 0 && c.SendErrors == 0
		rep.Checks = append(rep.Checks, Check{Name: "malformed: good requests all succeed", Pass: ok,
			Detail: fmt.Sprintf("good requests: %s", goodSummary(c))})
	}
}

func goodSummary(c *ClassReport) string {
	if c == nil {
		return "none sent"
	}
	return fmt.Sprintf("%d sent, %d ok, %d error results, %d send errors, %d lost", c.Sent, c.Succeeded, c.Failed, c.SendErrors, c.Lost)
}

func settings(p Params, s Scenario, sc SuiteConfig) map[string]string {
	m := map[string]string{
		"duration": p.Duration.String(), "warmup": p.Warmup.String(), "model_latency": p.ModelLatency.String(),
		"model_jitter": p.ModelJitter.String(), "stream": strconv.FormatBool(p.Stream), "stack": strconv.FormatBool(sc.Stack.Bin != ""),
	}
	if sc.Stack.Bin != "" {
		m["instances"] = stackInstances(sc.Stack).String()
	}
	if rt := p.retry(s); rt.Max > 0 {
		rt.defaults()
		m["retries"], m["retry_budget"] = fmt.Sprint(rt.Max), rt.Budget.String()
	}
	switch s.Name {
	case "baseline", "long-tail", "batch", "mixed", "chaos", "capacity", "overload":
		m["rate"] = fmt.Sprint(p.Rate)
		m["conversations"] = fmt.Sprint(p.Conversations)
	}
	switch s.Name {
	case "spike":
		m["users"], m["ramp"], m["think"] = fmt.Sprint(p.Users), p.Ramp.String(), p.Think.String()
	case "long-tail":
		m["long_tail_share"], m["long_tail_latency"] = fmt.Sprint(p.LongTailShare), p.LongTailLatency.String()
	case "batch":
		m["batch_users"] = fmt.Sprint(p.BatchUsers)
	case "mixed":
		m["long_tail_share"], m["long_tail_latency"] = fmt.Sprint(p.LongTailShare), p.LongTailLatency.String()
		m["batch_users"] = fmt.Sprint(p.BatchUsers)
	case "chaos":
		m["chaos_down"] = p.ChaosDown.String()
	case "soak":
		m["duration"], m["users"], m["think"] = p.SoakDuration.String(), fmt.Sprint(p.SoakUsers), p.SoakThink.String()
	case "capacity":
		m["step_factor"], m["slo_overhead_p99_ms"], m["slo_success"] = fmt.Sprint(p.CapacityFactor), fmt.Sprint(p.CapacitySLOMS), fmt.Sprint(p.CapacityMinSuccess)
	case "overload":
		m["sustainable_rate"], m["queue_bound"] = fmt.Sprint(p.OverloadRate), p.OverloadQueue.String()
		m["interactive_lag_marks"] = "ingress defaults"
		if p.OverloadLagHigh > 0 {
			m["interactive_lag_marks"] = fmt.Sprintf("high %d, low %d (0: half the high one)", p.OverloadLagHigh, p.OverloadLagLow)
		}
		if p.OverloadQueueHigh > 0 {
			m["interactive_queue_high"] = p.OverloadQueueHigh.String()
		}
	case "malformed":
		m["rate"], m["bad_share"] = fmt.Sprint(p.MalformedRate), fmt.Sprint(p.BadShare)
	}
	return m
}

// addComparisons adds, to scenarios that disturb the baseline, a check
// that states their interactive p99 against the baseline's of the same
// suite (informational: it passes; the figure is the point).
func addComparisons(s *Suite) {
	var base *Report
	for _, r := range s.Reports {
		if r.Scenario == "baseline" {
			base = r
		}
	}
	if base == nil || base.Classes[classInteractive] == nil {
		return
	}
	b := base.Classes[classInteractive].LatencyMS
	for _, r := range s.Reports {
		c := r.Classes[classInteractive]
		if r == base || c == nil || !slices.Contains([]string{"long-tail", "batch", "mixed", "chaos"}, r.Scenario) {
			continue
		}
		r.Checks = append(r.Checks, Check{Name: "interactive p99 against baseline (same suite)", Pass: true,
			Detail: fmt.Sprintf("p50 %.1f vs %.1f ms, p99 %.1f vs %.1f ms (%+.0f%%)", c.LatencyMS.P50, b.P50, c.LatencyMS.P99, b.P99, pct(c.LatencyMS.P99, b.P99))})
	}
}

func pct(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * (a - b) / b
}

// Names lists the scenario names.
func Names() []string { return scenarioNames() }

// deleteTopics deletes a scenario's topics, best effort (bounded to 30s,
// also after ctx ended: the run is over, its topics still go).
func deleteTopics(ctx context.Context, opts []kgo.Opt, t Topics) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	_, _ = kadm.NewClient(cl).DeleteTopics(ctx, t.Interactive, t.Batch, t.Results, t.DeadLetter)
}
