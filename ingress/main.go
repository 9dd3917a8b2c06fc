// Command ingress accepts requests over HTTP and produces them to Kafka.
// See README.md for the API and docs/ARCHITECTURE.md for how it fits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/ingress"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "HTTP listen address")
	brokers := flag.String("brokers", envOr("SWITCHBOARD_BROKERS", "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"), "Kafka seed brokers, comma-separated (env SWITCHBOARD_BROKERS)")
	topicsFile := flag.String("topics-file", "", "topics.yaml to use (default: the one built in)")
	prefix := flag.String("topic-prefix", "", "topic name prefix (default: the topics file's)")
	provision := flag.Bool("provision-topics", false, "create or grow the topics from the topics file at start")
	maxBody := flag.Int64("max-body-bytes", 1<<20, "largest accepted request body")
	produceTimeout := flag.Duration("produce-timeout", 10*time.Second, "how long a request waits for Kafka's acknowledgement before a 503")
	logFormat := flag.String("log-format", "json", "log format: json or text")
	logLevel := flag.String("log-level", "info", "log level: debug, info, warn, error")
	flag.Parse()

	if err := run(*logFormat, *logLevel, *topicsFile, *prefix, *provision, ingress.Config{
		Addr:           *addr,
		Kafka:          kafkaconf.Config{Brokers: kafkaconf.ParseBrokers(*brokers), ClientID: "switchboard-ingress"},
		MaxBodyBytes:   *maxBody,
		ProduceTimeout: *produceTimeout,
	}); err != nil {
		fmt.Fprintln(os.Stderr, "ingress:", err)
		os.Exit(1)
	}
}

func run(logFormat, logLevel, topicsFile, prefix string, provision bool, cfg ingress.Config) error {
	logger, err := telemetry.NewLogger(os.Stderr, logFormat, logLevel)
	if err != nil {
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
