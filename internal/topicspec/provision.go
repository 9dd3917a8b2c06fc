package topicspec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
)

// Provision connects to the cluster of kafka (brokers, TLS, SASL), waits until it answers, runs
// [Reconcile] with spec, and closes its connection. ctx bounds the whole
// operation, waiting included: give it a deadline, or Provision waits for an
// unreachable cluster until ctx is cancelled. Binaries call this when started
// with --provision-topics; cmd/topics (make topics) calls nothing else.
//
// As with Reconcile, the report is never nil and keeps what succeeded when
// the error is not nil.
func Provision(ctx context.Context, kafka kafkaconf.Config, spec *Spec, logger *slog.Logger) (*Report, error) {
	brokers := kafka.Brokers
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(brokers) == 0 {
		return &Report{}, errors.New("provision topics: no brokers given")
	}
	if err := spec.Validate(); err != nil {
		return &Report{}, fmt.Errorf("provision topics: %w", err)
	}
	cl, err := kgo.NewClient(kafka.Opts(nil)...)
	if err != nil {
		return &Report{}, fmt.Errorf("provision topics: kafka client: %w", err)
	}
	defer cl.Close()

	if err := waitReachable(ctx, cl, brokers, logger); err != nil {
		return &Report{}, fmt.Errorf("provision topics: %w", err)
	}
	report, err := Reconcile(ctx, kadm.NewClient(cl), spec, logger)
	if err != nil {
		return report, fmt.Errorf("provision topics: %w", err)
	}
	return report, nil
}

// waitReachable pings the cluster until a broker answers or ctx is done,
// backing off from 100ms to 1s between attempts.
func waitReachable(ctx context.Context, cl *kgo.Client, brokers []string, logger *slog.Logger) error {
	const (
		minBackoff = 100 * time.Millisecond
		maxBackoff = time.Second
	)
	backoff := minBackoff
	for attempt := 1; ; attempt++ {
		err := cl.Ping(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait for cluster %v: %w (last error: %w)", brokers, ctx.Err(), err)
		}
		if attempt == 1 {
			logger.Info("waiting for the cluster to answer", "brokers", brokers, "error", err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for cluster %v: %w (last error: %w)", brokers, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
