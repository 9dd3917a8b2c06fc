// Command loadtest drives load through Switchboard and accounts for every
// request; see internal/loadtest and docs/BENCHMARKS.md.
//
//	loadtest --stack --scenarios all --out bench/run1     # start a local stack per scenario, run the suite
//	loadtest --scenarios baseline --rate 500 --duration 30s  # against a running stack (make run)
//	loadtest compare bench/run1/suite.json bench/run2/suite.json
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/loadtest"
	"github.com/switchboard-llm/switchboard/internal/stack"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "compare" {
		if err := compare(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest compare:", err)
			os.Exit(2)
		}
		return
	}
	d := loadtest.DefaultParams()
	p := d
	scenarios := flag.String("scenarios", "baseline", "comma-separated scenarios to run, or all: "+strings.Join(loadtest.Names(), ","))
	stack := flag.Bool("stack", false, "start a fresh local stack of the real binaries (from --bin) for each scenario; needed by chaos")
	bin := flag.String("bin", "bin", "directory of the binaries for --stack (make build)")
	stackKafka := flag.String("stack-kafka", "devbroker", "with --stack: the Kafka of the stacks: devbroker (started per scenario), apache (the running local cluster of make kafka-up; chaos kills its node kafka-1), or host:port,... of another cluster; on an existing cluster each scenario uses topics and a group of its own")
	stackDir := flag.String("stack-dir", "", "where --stack keeps broker data and process logs (default: <out>/stack, or a temporary directory)")
	out := flag.String("out", "", "directory for the reports: <scenario>.json, suite.json, report.html, summary.txt")
	jsonOut := flag.String("json", "", "also write the suite as JSON to this file")
	htmlOut := flag.String("html", "", "also write the HTML report to this file")
	label := flag.String("label", "", "conditions of the run, printed with every figure (e.g. \"loaded shared machine\")")
	strict := flag.Bool("strict", false, "exit with status 1 when a check fails")
	driver := flag.String("driver", "http", "how requests enter: http (ingress), ws (ingress WebSockets) or kafka (straight to the requests topics)")
	reader := flag.String("reader", "sse", "how answers are read: sse (egress) or kafka (the results topic)")
	ingress := flag.String("ingress", "http://127.0.0.1:8080", "ingress base URL (without --stack)")
	apiKey := flag.String("api-key", envOr("SWITCHBOARD_API_KEY", loadtest.DevKey), "API key sent to ingress and egress as a bearer token (without --stack; env SWITCHBOARD_API_KEY)")
	tenantName := flag.String("tenant", envOr("SWITCHBOARD_TENANT", "dev"), "the --api-key's tenant, written into requests by the kafka driver so egress shows their answers to that key (without --stack; env SWITCHBOARD_TENANT)")
	egress := flag.String("egress", "http://127.0.0.1:8081", "egress base URL (without --stack)")
	modelsim := flag.String("modelsim", "http://127.0.0.1:8090", "model simulator base URL for the direct reference calls; empty skips them (without --stack)")
	brokers := flag.String("brokers", "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094", "Kafka seed brokers for lag, dead letters and the kafka driver and reader; empty for none (without --stack)")
	prefix := flag.String("topic-prefix", "", "topic name prefix (default: the built-in topics.yaml's)")
	pids := flag.String("pids", "", "processes of a running stack to sample CPU and memory of, as name=pid,name=pid (with --stack: all of its own)")
	drain := flag.Duration("drain", 30*time.Second, "how long to wait for the last answers of a scenario")
	flag.DurationVar(&p.Duration, "duration", d.Duration, "how long each scenario sends")
	flag.DurationVar(&p.Warmup, "warmup", d.Warmup, "leading time excluded from the figures (spike: none)")
	flag.Float64Var(&p.Rate, "rate", d.Rate, "open-loop interactive requests per second (baseline, long-tail, batch, chaos)")
	flag.IntVar(&p.Conversations, "conversations", d.Conversations, "conversations sharing an open-loop rate")
	flag.IntVar(&p.Users, "users", d.Users, "spike: closed-loop users")
	flag.DurationVar(&p.Ramp, "ramp", d.Ramp, "spike: time over which the users arrive")
	flag.DurationVar(&p.Think, "think", d.Think, "spike: mean think time between an answer and the next request")
	flag.IntVar(&p.BatchUsers, "batch-users", d.BatchUsers, "batch: closed-loop batch-lane users without think time")
	flag.Float64Var(&p.LongTailShare, "long-tail-share", d.LongTailShare, "long-tail: share of model calls that are slow (--stack sets modelsim's)")
	flag.DurationVar(&p.LongTailLatency, "long-tail-latency", d.LongTailLatency, "long-tail: latency of the slow model calls")
	flag.Float64Var(&p.BadShare, "bad-share", d.BadShare, "malformed: share of bad inputs")
	flag.Float64Var(&p.MalformedRate, "malformed-rate", d.MalformedRate, "malformed: requests per second, bad ones included")
	flag.DurationVar(&p.ChaosDown, "chaos-down", d.ChaosDown, "chaos: how long a killed process stays down (the backend: three times this)")
	flag.DurationVar(&p.ModelLatency, "model-latency", d.ModelLatency, "model latency (--stack sets modelsim's)")
	flag.DurationVar(&p.ModelJitter, "model-jitter", d.ModelJitter, "model latency jitter (--stack sets modelsim's)")
	flag.BoolVar(&p.Stream, "stream", d.Stream, "ask for streamed answers (time to first chunk needs it)")
	flag.Parse()

	pidMap := map[string]int{}
	for kv := range strings.SplitSeq(*pids, ",") {
		name, pid, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(pid)
		if kv != "" && (!ok || err != nil) {
			fmt.Fprintf(os.Stderr, "loadtest: --pids %q: want name=pid\n", kv)
			os.Exit(2)
		}
		if ok {
			pidMap[name] = n
		}
	}
	names := strings.Split(*scenarios, ",")
	if *scenarios == "all" {
		names = loadtest.Names()
	}
	code, err := run(runArgs{names: names, params: p, stack: *stack, stackKafka: *stackKafka, bin: *bin, stackDir: *stackDir, out: *out, jsonOut: *jsonOut,
		htmlOut: *htmlOut, label: *label, strict: *strict, driver: *driver, reader: *reader, ingress: *ingress, apiKey: *apiKey, tenant: *tenantName, egress: *egress,
		modelsim: *modelsim, brokers: *brokers, prefix: *prefix, drain: *drain, pids: pidMap})
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
	}
	os.Exit(code)
}

type runArgs struct {
	names                                                      []string
	params                                                     loadtest.Params
	stack                                                      bool
	bin, stackDir, out, jsonOut, htmlOut, label                string
	stackKafka                                                 string
	strict                                                     bool
	driver, reader, ingress, apiKey, egress, modelsim, brokers string
	tenant                                                     string
	prefix                                                     string
	drain                                                      time.Duration
	pids                                                       map[string]int
}

func run(a runArgs) (int, error) {
	// Errors only: during chaos the Kafka clients warn about every
	// refused reconnection, which is the point of the scenario.
	logger, err := telemetry.NewLogger(os.Stderr, "text", "error")
	if err != nil {
		return 2, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	spec, err := topicspec.Setup(ctx, "", a.prefix, false, nil, logger)
	if err != nil {
		return 2, err
	}
	topics := loadtest.Topics{Interactive: spec.Name(topicspec.RequestsInteractive), Batch: spec.Name(topicspec.RequestsBatch),
		Results: spec.Name(topicspec.Results), DeadLetter: spec.Name(topicspec.DeadLetter)}
	if a.out != "" {
		if err := os.MkdirAll(a.out, 0o755); err != nil {
			return 2, err
		}
	}
	sc := loadtest.SuiteConfig{
		Scenarios: a.names, Params: a.params, Driver: a.driver, Reader: a.reader, Label: a.label, Drain: a.drain,
		Command: strings.Join(os.Args, " "), ExternalPIDs: a.pids,
		External: loadtest.Endpoints{IngressURL: a.ingress, EgressURL: a.egress, ModelsimURL: a.modelsim, APIKey: a.apiKey, Tenant: a.tenant,
			Kafka: loadtest.KafkaEndpoint{Brokers: kafkaconf.ParseBrokers(a.brokers), Topics: topics}},
		KafkaOpts: func(brokers []string) []kgo.Opt {
			return kafkaconf.Config{Brokers: brokers, ClientID: "switchboard-loadtest"}.Opts(logger)
		},
		Progress: progressSink(),
		OnReport: func(r *loadtest.Report) {
			r.WriteSummary(os.Stdout)
			if a.out != "" {
				if err := loadtest.WriteJSON(filepath.Join(a.out, r.Scenario+".json"), r); err != nil {
					logger.Error("write report", "err", err)
				}
			}
		},
	}
	if a.stack {
		dir := a.stackDir
		if dir == "" && a.out != "" {
			dir = filepath.Join(a.out, "stack")
		}
		if dir == "" {
			if dir, err = os.MkdirTemp("", "switchboard-loadtest-"); err != nil {
				return 2, err
			}
			defer os.RemoveAll(dir)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return 2, err
		}
		sc.Stack = loadtest.StackConfig{Bin: a.bin, Dir: abs, Logger: logger}
		if err := stack.UseKafka(ctx, &sc.Stack, a.stackKafka, "."); err != nil {
			return 2, err
		}
		sc.TopicPrefix = spec.Prefix
	}
	suite, runErr := loadtest.RunSuite(ctx, sc)
	if suite != nil && len(suite.Reports) > 0 {
		if err := writeOutputs(a, suite); err != nil {
			return 2, errors.Join(runErr, err)
		}
	}
	if runErr != nil {
		return 2, runErr
	}
	if a.strict && suite.Failed() {
		return 1, errors.New("a check failed")
	}
	return 0, nil
}

func writeOutputs(a runArgs, suite *loadtest.Suite) error {
	var errs []error
	writeHTML := func(path string) {
		f, err := os.Create(path)
		if err != nil {
			errs = append(errs, err)
			return
		}
		errs = append(errs, loadtest.WriteHTML(f, suite), f.Close())
	}
	if a.out != "" {
		errs = append(errs, loadtest.WriteJSON(filepath.Join(a.out, "suite.json"), suite))
		writeHTML(filepath.Join(a.out, "report.html"))
		f, err := os.Create(filepath.Join(a.out, "summary.txt"))
		if err == nil {
			fmt.Fprintf(f, "command: %s\n", suite.Command)
			for _, r := range suite.Reports {
				r.WriteSummary(f)
			}
			errs = append(errs, f.Close())
		} else {
			errs = append(errs, err)
		}
		fmt.Printf("\nreports in %s: suite.json, report.html, summary.txt, <scenario>.json\n", a.out)
	}
	if a.jsonOut != "" {
		errs = append(errs, loadtest.WriteJSON(a.jsonOut, suite))
	}
	if a.htmlOut != "" {
		writeHTML(a.htmlOut)
	}
	return errors.Join(errs...)
}

func progressSink() loadtest.ProgressSink {
	fi, err := os.Stderr.Stat()
	return loadtest.ProgressSink{W: os.Stderr, TTY: err == nil && fi.Mode()&os.ModeCharDevice != 0}
}

func compare(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("usage: loadtest compare A.json B.json (a suite.json or a <scenario>.json each)")
	}
	a, err := loadtest.ReadSuite(fs.Arg(0))
	if err != nil {
		return err
	}
	b, err := loadtest.ReadSuite(fs.Arg(1))
	if err != nil {
		return err
	}
	var w io.Writer = os.Stdout
	loadtest.WriteComparison(w, a, b, fs.Arg(0), fs.Arg(1))
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
