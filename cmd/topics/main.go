// Command topics reconciles a Kafka cluster with topics.yaml (see
// internal/topicspec): it creates missing topics, adds partitions when the
// file asks for more, and reports surplus partitions and config drift
// without changing them. It never deletes or shrinks anything. `make topics`
// runs it; the report goes to stdout, logs to stderr, and the exit status is
// 1 if anything failed.
//
// With --apply-acls or --print-acls it works on ACLs instead (internal/acl):
// the least privilege of one binary's role for one principal, created with
// kadm or printed as kafka-acls commands.
//
//	topics --brokers 127.0.0.1:19092 --replication-factor 1
//	topics --apply-acls --principal User:ingress --role ingress   # as a principal allowed to alter ACLs
//	topics --print-acls --principal User:router --role router-worker --exactly-once
package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/acl"
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

	applyACLs, printACLs bool
	principal, role      string
	acl                  acl.Params
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
	f.Bool(&s.applyACLs, "apply-acls", "instead of topics: create the ACLs --role needs for --principal (docs/OPERATIONS.md)")
	f.Bool(&s.printACLs, "print-acls", "instead of topics: print the ACLs --role needs for --principal as kafka-acls commands")
	f.String(&s.principal, "principal", "principal of --apply-acls and --print-acls, e.g. User:ingress")
	f.String(&s.role, "role", "role of --apply-acls and --print-acls: "+strings.Join(acl.Roles, ", "))
	p := &s.acl
	p.RouterGroup, p.WebhookGroup, p.RedriveGroup = acl.DefaultRouterGroup, acl.DefaultWebhookGroup, acl.DefaultRedriveGroup
	f.String(&p.RouterGroup, "router-group", "ACLs: the router-workers' consumer group")
	f.String(&p.WebhookGroup, "webhook-group", "ACLs: egress's webhook delivery group")
	f.String(&p.RedriveGroup, "redrive-group", "ACLs: redrive's group")
	f.Bool(&p.ExactlyOnce, "exactly-once", "ACLs: router-worker runs with --exactly-once (transactional IDs)")
	f.String(&p.TransactionalID, "transactional-id", "ACLs: router-worker's --transactional-id (default: the prefix "+acl.DefaultTransactionalPrefix+")")
	f.Bool(&p.Webhooks, "webhooks", "ACLs: egress runs with --webhooks")
	f.Bool(&p.NoAdmission, "no-admission", "ACLs: ingress runs with --no-admission")
	f.Bool(&p.NoConsole, "no-console", "ACLs: egress runs with --console off")
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
	if s.applyACLs || s.printACLs {
		return s.acls(ctx, env, spec)
	}
	report, err := topicspec.Provision(ctx, env.Kafka, spec, env.Logger)
	fmt.Fprint(env.Stdout, report)
	return err
}

// acls applies or prints the ACLs of --role for --principal.
func (s *settings) acls(ctx context.Context, env *daemon.Env, spec *topicspec.Spec) error {
	if s.principal == "" || s.role == "" {
		return fmt.Errorf("%w: --apply-acls and --print-acls need --principal and --role", daemon.ErrUsage)
	}
	if !strings.Contains(s.principal, ":") {
		return fmt.Errorf("%w: --principal %q: want a type and name, e.g. User:%s", daemon.ErrUsage, s.principal, s.principal)
	}
	p := s.acl
	p.Topics = spec
	grants, err := acl.For(s.role, p)
	if err != nil {
		return fmt.Errorf("%w: %w", daemon.ErrUsage, err)
	}
	if s.printACLs {
		for _, c := range acl.Commands(s.principal, grants, strings.Join(env.Kafka.Brokers, ","), "admin.properties") {
			fmt.Fprintln(env.Stdout, c)
		}
		return nil
	}
	cl, err := kgo.NewClient(env.Kafka.Opts(env.Logger)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := acl.Apply(ctx, kadm.NewClient(cl), s.principal, grants); err != nil {
		return err
	}
	for _, g := range grants {
		fmt.Fprintf(env.Stdout, "allowed  %s: %s\n", s.principal, g)
	}
	return nil
}
