// Command topics reconciles a Kafka cluster with topics.yaml (see
// internal/topicspec): it creates missing topics, adds partitions when the
// file asks for more, and reports surplus partitions and config drift
// without changing them. It never deletes or shrinks anything. `make topics`
// runs it; the report goes to stdout, logs to stderr, and the exit status is
// 1 if anything failed.
//
//	topics --brokers 127.0.0.1:19092 --replication-factor 1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// defaultBrokers is used when neither --brokers nor SWITCHBOARD_BROKERS is
// given: the devbroker's default addresses.
const defaultBrokers = "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "topics:", err)
		os.Exit(1)
	}
}

// run parses args (with defaults from getenv), provisions the topics and
// prints the report to stdout, even a partial one when an error is returned.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	brokersDefault := defaultBrokers
	if v := getenv("SWITCHBOARD_BROKERS"); v != "" {
		brokersDefault = v
	}
	fs := flag.NewFlagSet("topics", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		brokers    = fs.String("brokers", brokersDefault, "comma-separated seed broker `addresses` (default from SWITCHBOARD_BROKERS when set)")
		topicsFile = fs.String("topics-file", "", "topic spec `file`; empty uses the topics.yaml built into the binary")
		prefix     = fs.String("topic-prefix", "", "topic name `prefix` (default: the spec's prefix)")
		rf         = fs.Int("replication-factor", 0, "replication `factor` for every topic; 0 uses the spec's")
		timeout    = fs.Duration("timeout", 30*time.Second, "how long to wait for the cluster to answer and the work to finish")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *rf < 0 || *rf > math.MaxInt16 {
		return fmt.Errorf("--replication-factor: %d is out of range", *rf)
	}
	var seeds []string
	for b := range strings.SplitSeq(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			seeds = append(seeds, b)
		}
	}

	spec, err := topicspec.Load(*topicsFile)
	if err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "topic-prefix" { // an explicit empty prefix is allowed
			spec = spec.WithPrefix(*prefix)
		}
	})
	if *rf > 0 {
		spec = spec.WithReplicationFactor(int16(*rf))
	}

	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	report, err := topicspec.Provision(ctx, seeds, spec, logger)
	fmt.Fprint(stdout, report)
	return err
}
