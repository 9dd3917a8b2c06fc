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
	"fmt"
	"io"
	"math"
	"time"

	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func main() {
	d, s := newDaemon()
	d.Main(s.run)
}

type settings struct {
	d                  *daemon.Daemon
	topicsFile, prefix string
	rf                 int
	timeout            time.Duration
}

func newDaemon() (*daemon.Daemon, *settings) {
	d := daemon.New(daemon.Program{Name: "topics", Kafka: true})
	s := &settings{d: d, timeout: 30 * time.Second}
	f := d.Flags
	// Not the daemon's topics settings: an explicit empty prefix is allowed here.
	f.String(&s.topicsFile, "topics-file", "topic spec file; empty uses the topics.yaml built into the binary")
	f.String(&s.prefix, "topic-prefix", "topic name prefix (default: the spec's prefix)")
	f.Int(&s.rf, "replication-factor", "replication factor for every topic; 0 uses the spec's")
	f.Duration(&s.timeout, "timeout", "how long to wait for the cluster to answer and the work to finish")
	return d, s
}

// run parses args (with defaults from getenv), provisions the topics and
// prints the report to stdout, even a partial one when an error is returned.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	d, s := newDaemon()
	return d.Run(ctx, args, getenv, stdout, stderr, s.run)
}

func (s *settings) run(ctx context.Context, env *daemon.Env) error {
	if s.rf < 0 || s.rf > math.MaxInt16 {
		return fmt.Errorf("--replication-factor: %d is out of range", s.rf)
	}
	spec, err := topicspec.Load(s.topicsFile)
	if err != nil {
		return err
	}
	if s.d.Flags.Given("topic-prefix") { // an explicit empty prefix is allowed
		spec = spec.WithPrefix(s.prefix)
	}
	if s.rf > 0 {
		spec = spec.WithReplicationFactor(int16(s.rf))
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	report, err := topicspec.Provision(ctx, env.Kafka, spec, env.Logger)
	fmt.Fprint(env.Stdout, report)
	return err
}
