// Command ingress accepts requests over HTTP, WebSocket and gRPC and
// produces them to Kafka.
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

	"github.com/switchboard-llm/switchboard/internal/healthcheck"
	"github.com/switchboard-llm/switchboard/internal/ingress"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == healthcheck.Command { // images have no shell: Docker probes run the binary
		os.Exit(healthcheck.Main(os.Args[2:], "http://127.0.0.1:8080/readyz", os.Stdout, os.Stderr))
	}
	addr := flag.String("addr", "127.0.0.1:8080", "HTTP listen address")
	brokers := flag.String("brokers", envOr("SWITCHBOARD_BROKERS", "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"), "Kafka seed brokers, comma-separated (env SWITCHBOARD_BROKERS)")
	topicsFile := flag.String("topics-file", "", "topics.yaml to use (default: the one built in)")
	prefix := flag.String("topic-prefix", "", "topic name prefix (default: the topics file's)")
	provision := flag.Bool("provision-topics", false, "create or grow the topics from the topics file at start")
	grpcAddr := flag.String("grpc-addr", "127.0.0.1:8083", "gRPC listen address (empty: no gRPC)")
	tenantsFile := flag.String("tenants", "", "tenants file mapping API key digests to tenants (required; see tenants.yaml)")
	maxBody := flag.Int64("max-body-bytes", 1<<20, "largest accepted request body, WebSocket frame or gRPC message")
	maxBatch := flag.Int("max-batch-items", 100, "most requests in one POST /v1/messages:batch")
	maxInFlight := flag.Int("max-in-flight", 10000, "most requests being produced at once (beyond: 503)")
	idemWindow := flag.Duration("idempotency-window", 10*time.Minute, "how long an Idempotency-Key is remembered")
	produceTimeout := flag.Duration("produce-timeout", 5*time.Second, "how long a request waits for Kafka's acknowledgement before a 503")
	linger := flag.Duration("produce-linger", 0, "producer linger (0: send at once; batches still form while requests are in flight)")
	noAdmission := flag.Bool("no-admission", false, "turn off lag-driven admission")
	group := flag.String("router-group", "switchboard-router", "router-worker consumer group whose lag drives admission")
	batchHigh := flag.Int64("batch-lag-high", 20000, "total lag (records) above which batch requests are rejected")
	batchLow := flag.Int64("batch-lag-low", 10000, "total lag below which batch requests are admitted again")
	interHigh := flag.Int64("interactive-lag-high", 50000, "interactive lag above which interactive requests are rejected")
	interLow := flag.Int64("interactive-lag-low", 25000, "interactive lag below which interactive requests are admitted again")
	readHeaderTimeout := flag.Duration("read-header-timeout", 5*time.Second, "time a client has to send a request's headers")
	bodyTimeout := flag.Duration("body-timeout", 10*time.Second, "time a client has to send a request's body, after its headers (then 408)")
	writeTimeout := flag.Duration("write-timeout", 30*time.Second, "time to answer a request, after its headers")
	idleTimeout := flag.Duration("idle-timeout", 60*time.Second, "close kept-alive connections idle this long")
	maxConnsPerAddr := flag.Int("max-conns-per-addr", 1024, "open connections of one client IP address; more are closed on accept (negative: no cap)")
	maxConnsPerTenant := flag.Int("max-conns-per-tenant", 2048, "open requests and WebSocket connections of one tenant; more get 429 (negative: no cap)")
	webhookAllow := flag.String("webhook-allow", "", "comma-separated webhook targets every tenant may name, besides the tenants file's lists (give egress's --webhook-allow; docs/WEBHOOKS.md)")
	logFormat := flag.String("log-format", "json", "log format: json or text")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	pprof := flag.Bool("pprof", false, "serve Go profiles under /debug/pprof/ on --addr")
	flag.Parse()

	if err := run(*logFormat, *logLevel, *topicsFile, *prefix, *tenantsFile, *provision, ingress.Config{
		Pprof:             *pprof,
		Addr:              *addr,
		GRPCAddr:          *grpcAddr,
		Kafka:             kafkaconf.Config{Brokers: kafkaconf.ParseBrokers(*brokers), ClientID: "switchboard-ingress"},
		MaxBodyBytes:      *maxBody,
		MaxBatchItems:     *maxBatch,
		MaxInFlight:       *maxInFlight,
		IdempotencyWindow: *idemWindow,
		ProduceTimeout:    *produceTimeout,
		ProduceLinger:     *linger,
		ReadHeaderTimeout: *readHeaderTimeout,
		BodyTimeout:       *bodyTimeout,
		WriteTimeout:      *writeTimeout,
		IdleTimeout:       *idleTimeout,
		MaxConnsPerAddr:   *maxConnsPerAddr,
		MaxConnsPerTenant: *maxConnsPerTenant,
		WebhookAllow:      split(*webhookAllow),
		Admission: ingress.AdmissionConfig{
			Disabled: *noAdmission, Group: *group,
			BatchHigh: *batchHigh, BatchLow: *batchLow, InteractiveHigh: *interHigh, InteractiveLow: *interLow,
		},
	}); err != nil {
		fmt.Fprintln(os.Stderr, "ingress:", err)
		os.Exit(1)
	}
}

func run(logFormat, logLevel, topicsFile, prefix, tenantsFile string, provision bool, cfg ingress.Config) error {
	logger, err := telemetry.NewLogger(os.Stderr, logFormat, logLevel)
	if err != nil {
		return err
	}
	if tenantsFile == "" {
		return errors.New("--tenants is required: a file of API key digests (the local stack uses tenants.yaml)")
	}
	// nil getenv: ingress sends no webhooks and needs none of their secrets.
	if cfg.Tenants, err = tenant.LoadEnv(tenantsFile, nil); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tp, stopTracing, err := telemetry.StartTracing(ctx, "switchboard-ingress", os.Getenv)
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
	in, err := ingress.New(cfg)
	if err != nil {
		return err
	}
	return in.Run(ctx)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
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
