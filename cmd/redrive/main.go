// Command redrive reads Switchboard's dead-letter topic and sends the
// requests it holds back to their requests topics in conversation order
// (see internal/redrive and docs/OPERATIONS.md). Without --execute it only
// lists what it would do. One JSON line per dead letter goes to stdout, the
// summary and logs to stderr.
//
//	redrive --brokers 127.0.0.1:19092                        # list every dead letter not yet re-driven
//	redrive --reason backend_error --execute                 # re-drive the backend failures
//	redrive --conversation order-42 --from-start --execute   # one conversation, again from the start
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/redrive"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "redrive:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	brokersDefault := "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"
	if v := getenv("SWITCHBOARD_BROKERS"); v != "" {
		brokersDefault = v
	}
	fs := flag.NewFlagSet("redrive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		brokers       = fs.String("brokers", brokersDefault, "Kafka seed brokers, comma-separated (env SWITCHBOARD_BROKERS)")
		topicsFile    = fs.String("topics-file", "", "topics.yaml to use (default: the one built in)")
		prefix        = fs.String("topic-prefix", "", "topic name prefix (default: the topics file's)")
		group         = fs.String("group", "switchboard-redrive", "consumer group that keeps the re-drive's progress")
		fromStart     = fs.Bool("from-start", false, "read from the start of the dead-letter topic, not after the progress committed by earlier runs")
		reasons       = fs.String("reason", "", "comma-separated reasons to re-drive (e.g. backend_error,unknown_model); empty: all")
		conversations = fs.String("conversation", "", "comma-separated conversation IDs to re-drive; empty: all")
		execute       = fs.Bool("execute", false, "produce the requests and commit progress (without it: list only)")
		limit         = fs.Int("limit", 0, "stop after this many selected dead letters (0: no limit)")
		timeout       = fs.Duration("timeout", 5*time.Minute, "give up after this long")
		logFormat     = fs.String("log-format", "text", "log format: json or text")
		logLevel      = fs.String("log-level", "warn", "log level: debug, info, warn, error")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	logger, err := telemetry.NewLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	spec, err := topicspec.Setup(ctx, *topicsFile, *prefix, false, nil, logger)
	if err != nil {
		return err
	}
	rep, err := redrive.Run(ctx, redrive.Config{
		Kafka:         kafkaconf.Config{Brokers: kafkaconf.ParseBrokers(*brokers), ClientID: "switchboard-redrive"},
		Topics:        spec,
		Group:         *group,
		FromStart:     *fromStart,
		Reasons:       split(*reasons),
		Conversations: split(*conversations),
		Execute:       *execute,
		Limit:         *limit,
		Out:           stdout,
		Logger:        logger,
	})
	fmt.Fprintln(stderr, rep)
	if err == nil && !*execute && rep.WouldRedrive > 0 {
		fmt.Fprintln(stderr, "nothing was sent: add --execute to re-drive them")
	}
	return err
}

func split(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
