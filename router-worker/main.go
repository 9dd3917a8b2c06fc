// Command router-worker consumes requests, calls model backends and
// produces results. See README.md and docs/ARCHITECTURE.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/healthcheck"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/router"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == healthcheck.Command { // images have no shell: Docker probes run the binary
		os.Exit(healthcheck.Main(os.Args[2:], "http://127.0.0.1:8082/readyz", os.Stdout, os.Stderr))
	}
	addr := flag.String("addr", "127.0.0.1:8082", "listen address of /metrics, /healthz and /readyz")
	brokers := flag.String("brokers", envOr("SWITCHBOARD_BROKERS", "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"), "Kafka seed brokers, comma-separated (env SWITCHBOARD_BROKERS)")
	topicsFile := flag.String("topics-file", "", "topics.yaml to use (default: the one built in)")
	prefix := flag.String("topic-prefix", "", "topic name prefix (default: the topics file's)")
	provision := flag.Bool("provision-topics", false, "create or grow the topics from the topics file at start")
	backends := flag.String("backends", "backends.yaml", "backends file: model servers, models, limits, breakers (see docs/BACKENDS.md); reloaded on change and on SIGHUP")
	reloadInterval := flag.Duration("backends-check-interval", time.Second, "how often the backends file is checked for changes (0: only reload on SIGHUP)")
	group := flag.String("group", "switchboard-router", "consumer group")
	groupProtocol := flag.String("group-protocol", "classic", "consumer group protocol: classic (cooperative-sticky, assigned by the members) or consumer (KIP-848, assigned by the broker; Kafka 4.0+)")
	instanceID := flag.String("instance-id", os.Getenv("SWITCHBOARD_INSTANCE_ID"), "static group membership ID, unique in the group and stable across restarts (e.g. the pod name): a restart within --session-timeout gets the partitions back at once (env SWITCHBOARD_INSTANCE_ID; empty: dynamic member)")
	maxAttempts := flag.Int("max-attempts", 3, "tries at a request when the backend fails with a retryable error")
	maxInFlight := flag.Int("max-in-flight", 1024, "requests in flight at once (all lanes)")
	batchMaxInFlight := flag.Int("batch-max-in-flight", 0, "batch-lane requests in flight at once; the rest of --max-in-flight is reserved for interactive (0: 3/4 of --max-in-flight)")
	highMark := flag.Int("partition-high-mark", 1024, "records waiting or running in one partition before its fetching pauses (resumes at half)")
	exactlyOnce := flag.Bool("exactly-once", false, "commit terminal results and dead letters with the offsets in Kafka transactions (streamed chunks stay at-least-once)")
	txnID := flag.String("transactional-id", "", "transactional ID for --exactly-once, unique per running worker (default: from --instance-id, else random)")
	sessionTimeout := flag.Duration("session-timeout", 20*time.Second, "how long the group waits for a silent member (crashed, or a stopped static one) before reassigning its partitions")
	commitInterval := flag.Duration("commit-interval", 0, "how often finished work is committed; after a crash, work finished since the last commit runs again (0: 1s, or 100ms with --exactly-once)")
	revokeTimeout := flag.Duration("revoke-timeout", 10*time.Second, "how long a revoked partition's in-flight requests may run before they are cancelled")
	shutdownTimeout := flag.Duration("shutdown-timeout", 30*time.Second, "how long a stop waits for in-flight requests")
	fetchMinBytes := flag.Int("fetch-min-bytes", 1, "bytes a fetch waits for (with --fetch-max-wait): larger batches cost latency, save CPU")
	fetchMaxWait := flag.Duration("fetch-max-wait", 5*time.Second, "longest a fetch waits for --fetch-min-bytes")
	linger := flag.Duration("produce-linger", 5*time.Millisecond, "how long results wait to be batched")
	pprof := flag.Bool("pprof", false, "serve Go profiles under /debug/pprof/ on --addr")
	logFormat := flag.String("log-format", "json", "log format: json or text")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()

	if err := run(*logFormat, *logLevel, *topicsFile, *prefix, *provision, *backends, router.Config{
		Addr:              *addr,
		Kafka:             kafkaconf.Config{Brokers: kafkaconf.ParseBrokers(*brokers), ClientID: "switchboard-router"},
		Group:             *group,
		InstanceID:        *instanceID,
		GroupProtocol:     *groupProtocol,
		Pprof:             *pprof,
		FetchMinBytes:     int32(*fetchMinBytes),
		FetchMaxWait:      *fetchMaxWait,
		ProduceLinger:     *linger,
		MaxAttempts:       *maxAttempts,
		ReloadInterval:    checkInterval(*reloadInterval),
		MaxInFlight:       *maxInFlight,
		BatchMaxInFlight:  *batchMaxInFlight,
		PartitionHighMark: *highMark,
		RevokeTimeout:     *revokeTimeout,
		CommitInterval:    *commitInterval,
		SessionTimeout:    *sessionTimeout,
		ExactlyOnce:       *exactlyOnce,
		TransactionalID:   *txnID,
		ShutdownTimeout:   *shutdownTimeout,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "router-worker:", err)
		os.Exit(1)
	}
}

func run(logFormat, logLevel, topicsFile, prefix string, provision bool, backendsFile string, cfg router.Config) error {
	logger, err := telemetry.NewLogger(os.Stderr, logFormat, logLevel)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tp, stopTracing, err := telemetry.StartTracing(ctx, "switchboard-router-worker", os.Getenv)
	if err != nil {
		return err
	}
	defer stopTracing(context.WithoutCancel(ctx))
	cfg.Kafka.Tracing = kafkaconf.NewTracing(tp)
	if cfg.Routing, err = router.LoadBackends(backendsFile); err != nil {
		return err
	}
	cfg.BackendsFile = backendsFile
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg.ReloadSignal = hup
	spec, err := topicspec.Setup(ctx, topicsFile, prefix, provision, cfg.Kafka.Brokers, logger)
	if err != nil {
		return err
	}
	cfg.Topics = spec
	cfg.Logger = logger
	r, err := router.New(cfg)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// checkInterval maps the flag's 0 (never) to the Config's negative.
func checkInterval(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
