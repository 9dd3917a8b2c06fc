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
	"github.com/switchboard-llm/switchboard/internal/webhook"
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
	writeTimeout := flag.Duration("write-timeout", 10*time.Second, "bound of one write to a stream, and of the wait for a non-reading client's backlog to fall (then end: overflow)")
	perTenant := flag.Int("max-streams-per-tenant", 10000, "open streams of one tenant on this instance; more get 429 (negative: no cap)")
	perConv := flag.Int("max-streams-per-conversation", 64, "open streams of one conversation on this instance; more get 429 (negative: no cap)")
	sendBuffer := flag.Int("send-buffer", 64<<10, "kernel send buffer (SO_SNDBUF) of every HTTP connection, bytes (negative: the system's default)")
	maxUnsent := flag.Int("max-unsent-bytes", 0, "unread bytes a stream's socket may hold before the stream waits and then ends with overflow (0: half of --send-buffer; negative: no check)")
	maxConnsPerAddr := flag.Int("max-conns-per-addr", 0, "open HTTP connections of one client IP address; more are closed on accept (0: no cap)")
	tenantsFile := flag.String("tenants", "", "tenants file, the same as ingress's (API key digests, webhook endpoints; see tenants.yaml): every stream needs an API key and sees only its tenant's results; required unless --allow-anonymous")
	origins := flag.String("ws-origins", "", "comma-separated origin patterns allowed to open WebSocket streams from browsers (besides the host itself)")
	webhooks := flag.Bool("webhooks", false, "deliver terminal results to webhooks (consumer group --webhook-group)")
	webhookGroup := flag.String("webhook-group", "switchboard-egress-webhooks", "consumer group of webhook delivery")
	webhookInstance := flag.String("webhook-instance-id", os.Getenv("SWITCHBOARD_INSTANCE_ID"), "static membership ID in --webhook-group, unique and stable across restarts (e.g. the pod name): a restart within --webhook-session-timeout gets the partitions back at once (env SWITCHBOARD_INSTANCE_ID; empty: dynamic member)")
	webhookSession := flag.Duration("webhook-session-timeout", 20*time.Second, "how long the webhook group waits for a silent member before reassigning its partitions")
	webhookAllow := flag.String("webhook-allow", "", "comma-separated webhook targets every tenant may use, besides the tenants file's lists: [scheme://]host[:port][/path-prefix] (docs/WEBHOOKS.md)")
	printSecret := flag.String("print-webhook-secret", "", "print the named tenant's webhook signing secret (whsec_…, derived from SWITCHBOARD_WEBHOOK_SECRET unless the tenants file names its own) and exit")
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
		WriteTimeout:     *writeTimeout,
		CursorSecret:     []byte(os.Getenv("SWITCHBOARD_CURSOR_SECRET")),
		AllowAnonymous:   *anonymous,

		MaxStreamsPerTenant:       *perTenant,
		MaxStreamsPerConversation: *perConv,
		SendBuffer:                *sendBuffer,
		MaxUnsentBytes:            *maxUnsent,
		MaxConnsPerAddr:           *maxConnsPerAddr,
		WSOriginPatterns:          split(*origins),
		Webhooks: webhook.Config{
			Enabled:        *webhooks,
			Group:          *webhookGroup,
			InstanceID:     *webhookInstance,
			SessionTimeout: *webhookSession,
			Allow:          split(*webhookAllow),
			MaxAttempts:    *webhookAttempts,
			Backoff:        *webhookBackoff,
			MaxBackoff:     *webhookMaxBackoff,
			Timeout:        *webhookTimeout,
			StartWindow:    *webhookStart,
			MaxInFlight:    *webhookInFlight,
		},
	}
	if *printSecret != "" {
		if err := printWebhookSecret(*printSecret, *tenantsFile); err != nil {
			fmt.Fprintln(os.Stderr, "egress:", err)
			os.Exit(1)
		}
		return
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
	if cfg.Webhooks.Enabled {
		if cfg.Webhooks.Secret, err = globalSecret(); err != nil {
			return err
		}
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

// globalSecret reads the global webhook secret, SWITCHBOARD_WEBHOOK_SECRET.
func globalSecret() ([]byte, error) {
	v := os.Getenv("SWITCHBOARD_WEBHOOK_SECRET")
	if v == "" {
		return nil, errors.New("webhooks need the global signing secret in SWITCHBOARD_WEBHOOK_SECRET")
	}
	key, err := webhook.ParseSecret(v)
	if err != nil {
		return nil, fmt.Errorf("SWITCHBOARD_WEBHOOK_SECRET: %w", err)
	}
	return key, nil
}

// printWebhookSecret prints the secret a tenant's receivers verify with.
func printWebhookSecret(name, tenantsFile string) error {
	if tenantsFile != "" {
		set, err := tenant.LoadEnv(tenantsFile, os.Getenv)
		if err != nil {
			return err
		}
		if t := set.Tenant(name); t == nil {
			return fmt.Errorf("no tenant %q in %s", name, tenantsFile)
		} else if len(t.WebhookSecret) > 0 {
			key, err := webhook.ParseSecret(string(t.WebhookSecret))
			if err != nil {
				return err
			}
			fmt.Println(webhook.FormatSecret(key))
			return nil
		}
	}
	global, err := globalSecret()
	if err != nil {
		return err
	}
	fmt.Println(webhook.FormatSecret(webhook.TenantKey(global, name)))
	return nil
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
