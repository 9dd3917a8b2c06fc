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
	"fmt"
	"io"
	"time"

	"github.com/switchboard-llm/switchboard/internal/acl"
	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/redrive"
)

func main() {
	d, s := newDaemon()
	d.Main(s.run)
}

type settings struct {
	cfg     redrive.Config
	timeout time.Duration
}

func newDaemon() (*daemon.Daemon, *settings) {
	d := daemon.New(daemon.Program{Name: "redrive", Kafka: true, Topics: true, LogFormat: "text", LogLevel: "warn"})
	s := &settings{cfg: redrive.Config{Group: "switchboard-redrive"}, timeout: 5 * time.Minute}
	f, c := d.Flags, &s.cfg
	f.String(&c.Group, "group", "consumer group that keeps the re-drive's progress")
	f.Bool(&c.FromStart, "from-start", "read from the start of the dead-letter topic, not after the progress committed by earlier runs")
	f.List(&c.Reasons, "reason", "comma-separated reasons to re-drive (e.g. backend_error,unknown_model); empty: all")
	f.List(&c.Conversations, "conversation", "comma-separated conversation IDs to re-drive; empty: all")
	f.Bool(&c.Execute, "execute", "produce the requests and commit progress (without it: list only)")
	f.Int(&c.Limit, "limit", "stop after this many selected dead letters (0: no limit)")
	f.Duration(&s.timeout, "timeout", "give up after this long")
	return d, s
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	d, s := newDaemon()
	return d.Run(ctx, args, getenv, stdout, stderr, s.run)
}

func (s *settings) run(ctx context.Context, env *daemon.Env) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cfg := s.cfg
	cfg.Kafka, cfg.Topics, cfg.Out, cfg.Logger = env.Kafka, env.Topics, env.Stdout, env.Logger
	if err := acl.CheckStart(ctx, env.Kafka, acl.RoleRedrive, acl.Params{Topics: env.Topics, RedriveGroup: cfg.Group}, 20*time.Second); err != nil {
		return err
	}
	rep, err := redrive.Run(ctx, cfg)
	fmt.Fprintln(env.Stderr, rep)
	if err == nil && !cfg.Execute && rep.WouldRedrive > 0 {
		fmt.Fprintln(env.Stderr, "nothing was sent: add --execute to re-drive them")
	}
	return err
}
