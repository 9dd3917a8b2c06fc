// Command egress streams results to clients as Server-Sent Events,
// WebSocket messages and gRPC streams, and delivers them to webhooks.
// See README.md for the API and docs/ARCHITECTURE.md for how it fits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/egress"
	"github.com/switchboard-llm/switchboard/internal/healthcheck"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == healthcheck.Command { // images have no shell: Docker probes run the binary
		os.Exit(healthcheck.Main(os.Args[2:], "http://127.0.0.1:8081/readyz", os.Stdout, os.Stderr))
	}
	addr := flag.String("addr", "127.0.0.1:8081", "HTTP listen address (SSE and WebSocket streams, health, metrics)")
	grpcAddr := flag.String("grpc-addr", "", "gRPC listen address (switchboard.v1.Egress); empty: no gRPC")
	brokers := flag.String("brokers", envOr("SWITCHBOARD_BROKERS", "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"), "Kafka seed brokers, comma-separated (env SWITCHBOARD_BROKERS)")
	topicsFile := flag.String("topics-file", "", "topics.yaml to use (default: the one built in)")
	prefix := flag.String("topic-prefix", "", "topic name prefix (default: the topics file's)")
	provision := flag.Bool("provision-topics", false, "create or grow the topics from the topics file at start")
	replayWindow := flag.Duration("replay-window", 5*time.Minute, "how far back a new stream without a cursor is replayed")
	readCommitted := flag.Bool("read-committed", false, "read results read_committed: with router-worker --exactly-once, streams never show an aborted transaction's result, but results (chunks too) wait for open transactions to end")
	recentBytes := flag.Int64("recent-bytes", 64<<20, "memory bound of the index of recent results that new streams replay from (negative: none, every replay reads Kafka)")
	buffer := flag.Int("subscriber-buffer", 1024, "events held for a slow subscriber before it is disconnected")
	tenantsFile := flag.String("tenants", "", "tenants file, the same as ingress's (API key digests, webhook endpoints; see tenants.yaml): every stream needs an API key and sees only its tenant's results; required unless --allow-anonymous")
	origins := flag.String("ws-origins", "", "comma-separated origin patterns allowed to open WebSocket streams from browsers (besides the host itself)")
	webhooks := flag.Bool("webhooks", false, "deliver terminal results to webhooks (consumer group --webhook-group)")
	webhookGroup := flag.String("webhook-group", "switchboard-egress-webhooks", "consumer group of webhook delivery")
	webhookInstance := flag.String("webhook-instance-id", os.Getenv("SWITCHBOARD_INSTANCE_ID"), "static membership ID in --webhook-group, unique and stable across restarts (e.g. the pod name): a restart within --webhook-session-timeout gets the partitions back at once (env SWITCHBOARD_INSTANCE_ID; empty: dynamic member)")
	webhookSession := flag.Duration("webhook-session-timeout", 20*time.Second, "how long the webhook group waits for a silent member before reassigning its partitions")
	webhookAllow := flag.String("webhook-allow", "", "comma-separated hosts webhooks may call: host names, *.domain, IP addresses, CIDR prefixes")
	webhookAttempts := flag.Int("webhook-max-attempts", 6, "tries of one webhook delivery before it is dead-lettered")
	webhookBackoff := flag.Duration("webhook-backoff", 500*time.Millisecond, "wait after the first failed webhook try (doubles each time)")
	webhookMaxBackoff := flag.Duration("webhook-max-backoff", 30*time.Second, "longest wait between webhook tries")
	webhookTimeout := flag.Duration("webhook-timeout", 10*time.Second, "bound of one webhook request")
	webhookInFlight := flag.Int("webhook-max-in-flight", 256, "webhook deliveries in flight at once (one per conversation at most)")
	webhookStart := flag.Duration("webhook-start-window", 5*time.Minute, "how far back webhook delivery begins when its group has no committed offsets")
	logFormat := flag.String("log-format", "json", "log format: json or text")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	pprof := flag.Bool("pprof", false, "serve Go profiles under /debug/pprof/ on --addr")
	anonymous := flag.Bool("allow-anonymous", false, "run without --tenants: every stream open to anyone who can reach egress (a warning at every start)")
	flag.Parse()

	cfg := egress.Config{
		Pprof:            *pprof,
		ReadCommitted:    *readCommitted,
		Addr:             *addr,
		GRPCAddr:         *grpcAddr,
		Kafka:            kafkaconf.Config{Brokers: kafkaconf.ParseBrokers(*brokers), ClientID: "switchboard-egress"},
		ReplayWindow:     *replayWindow,
		RecentBytes:      *recentBytes,
		SubscriberBuffer: *buffer,
		WSOriginPatterns: split(*origins),
		CursorSecret:     []byte(os.Getenv("SWITCHBOARD_CURSOR_SECRET")),
		AllowAnonymous:   *anonymous,
		Webhooks: egress.WebhookConfig{
			Enabled:        *webhooks,
			Group:          *webhookGroup,
			InstanceID:     *webhookInstance,
			SessionTimeout: *webhookSession,
			Allow:          split(*webhookAllow),
			Secret:         []byte(os.Getenv("SWITCHBOARD_WEBHOOK_SECRET")),
			MaxAttempts:    *webhookAttempts,
			Backoff:        *webhookBackoff,
			MaxBackoff:     *webhookMaxBackoff,
			Timeout:        *webhookTimeout,
			StartWindow:    *webhookStart,
			MaxInFlight:    *webhookInFlight,
		},
	}
	if err := run(*logFormat, *logLevel, *topicsFile, *prefix, *provision, *tenantsFile, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "egress:", err)
		os.Exit(1)
	}
}

func run(logFormat, logLevel, topicsFile, prefix string, provision bool, tenantsFile string, cfg egress.Config) error {
	logger, err := telemetry.NewLogger(os.Stderr, logFormat, logLevel)
	if err != nil {
		return err
	}
	if tenantsFile != "" {
		// Only webhook delivery needs the tenants' secrets.
		getenv := os.Getenv
		if !cfg.Webhooks.Enabled {
			getenv = nil
		}
		if cfg.Tenants, err = tenant.LoadEnv(tenantsFile, getenv); err != nil {
			return err
		}
	}
	if cfg.Webhooks.Enabled && len(cfg.Webhooks.Secret) == 0 {
		return errors.New("--webhooks needs the signing secret in SWITCHBOARD_WEBHOOK_SECRET")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tp, stopTracing, err := telemetry.StartTracing(ctx, "switchboard-egress", os.Getenv)
	if err != nil {
		return err
	}
	defer stopTracing(context.WithoutCancel(ctx))
	cfg.Kafka.Tracing = kafkaconf.NewTracing(tp)
	spec, err := topicspec.Setup(ctx, topicsFile, prefix, provision, cfg.Kafka.Brokers, logger)
	if err != nil {
		return err
	}
	cfg.Topics = spec
	cfg.Logger = logger
	eg, err := egress.New(cfg)
	if err != nil {
		return err
	}
	return eg.Run(ctx)
}

func split(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
