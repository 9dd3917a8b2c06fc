// Command loadtest offers a fixed rate of requests straight to a requests
// topic and accounts for every answer on the results topic. See
// docs/BENCHMARKS.md for the runs behind the published numbers.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/loadtest"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:19092,127.0.0.1:19093,127.0.0.1:19094", "Kafka seed brokers")
	prefix := flag.String("topic-prefix", "", "topic name prefix (default: the built-in topics.yaml's)")
	lane := flag.String("lane", "interactive", "lane: interactive or batch")
	model := flag.String("model", "sim", "model to ask")
	rate := flag.Float64("rate", 1000, "offered requests per second")
	duration := flag.Duration("duration", 20*time.Second, "how long to send")
	warmup := flag.Duration("warmup", 3*time.Second, "leading time excluded from the figures")
	convs := flag.Int("conversations", 1000, "conversations sharing the load")
	drain := flag.Duration("drain", 30*time.Second, "how long to wait for the last answers")
	pids := flag.String("cpu-pids", "", "processes to measure CPU per request of, as name=pid,name=pid")
	jsonOut := flag.String("json", "", "write the report as JSON to this file")
	flag.Parse()

	if err := run(*brokers, *prefix, *lane, *model, *rate, *duration, *warmup, *convs, *drain, *pids, *jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

func run(brokers, prefix, lane, model string, rate float64, duration, warmup time.Duration, convs int, drain time.Duration, pids, jsonOut string) error {
	logger, err := telemetry.NewLogger(os.Stderr, "text", "info")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	spec, err := topicspec.Setup(ctx, "", prefix, false, nil, logger)
	if err != nil {
		return err
	}
	cpu := map[string]int{}
	for _, kv := range strings.Split(pids, ",") {
		if name, pid, ok := strings.Cut(kv, "="); ok {
			n, err := strconv.Atoi(pid)
			if err != nil {
				return fmt.Errorf("--cpu-pids %q: %w", kv, err)
			}
			cpu[name] = n
		}
	}
	requests := spec.Name(topicspec.RequestsInteractive)
	if lane == "batch" {
		requests = spec.Name(topicspec.RequestsBatch)
	}
	rep, err := loadtest.Run(ctx, loadtest.Config{
		ClientOpts:    kafkaconf.Config{Brokers: kafkaconf.ParseBrokers(brokers), ClientID: "switchboard-loadtest"}.Opts(logger),
		RequestsTopic: requests,
		ResultsTopic:  spec.Name(topicspec.Results),
		Lane:          lane, Model: model, Rate: rate, Duration: duration, Warmup: warmup,
		Conversations: convs, Drain: drain, CPUPIDs: cpu, Logger: logger,
	})
	if err != nil {
		return err
	}
	fmt.Printf("offered %.0f/s, achieved %.1f/s over %.1fs; sent %d (measured %d), answered %d\n",
		rep.OfferedRate, rep.AchievedRate, rep.MeasuredSeconds, rep.Sent, rep.Measured, rep.Answered)
	fmt.Printf("lost %d, duplicates %d, order violations %d, errors %v, produce errors %d, max send lag %.1fms\n",
		rep.Lost, rep.Duplicates, rep.OrderViolations, rep.Errors, rep.ProduceErrors, rep.SendLagMaxMS)
	for _, row := range []struct {
		name string
		p    loadtest.Percentiles
	}{{"end-to-end", rep.LatencyMS}, {"model", rep.ModelMS}, {"overhead", rep.OverheadMS}} {
		fmt.Printf("%-10s ms  p50 %7.1f  p90 %7.1f  p99 %7.1f  p99.9 %7.1f  max %7.1f\n", row.name, row.p.P50, row.p.P90, row.p.P99, row.p.P999, row.p.Max)
	}
	for name, ms := range rep.CPUPerRequestMS {
		fmt.Printf("cpu per request: %s %.3f ms\n", name, ms)
	}
	if jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		return os.WriteFile(jsonOut, b, 0o644)
	}
	return nil
}
