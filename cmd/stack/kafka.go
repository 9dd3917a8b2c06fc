package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
)

// kafkaCmd runs `stack kafka up|down|status`: the local three-node Apache
// Kafka cluster (make kafka-up, make kafka-down).
func kafkaCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("stack kafka", flag.ContinueOnError)
	dir := fs.String("dir", "data/kafka", "jars, data, logs and PID files of the cluster")
	pom := fs.String("pom", "deploy/kafka-local/pom.xml", "the POM that pins the Kafka version and lists the jars")
	timeout := fs.Duration("timeout", 2*time.Minute, "longest wait for the cluster to answer (up) or a node to stop (down)")
	security := fs.String("security", os.Getenv("KAFKA_SECURITY"), "plaintext (default) or sasl_ssl: the secured cluster (env KAFKA_SECURITY)")
	offset := fs.Int("port-offset", envInt("KAFKA_PORT_OFFSET", 0), "added to every port, for a second checkout's cluster (env KAFKA_PORT_OFFSET)")
	if len(args) == 0 {
		return fmt.Errorf("usage: stack kafka up|down|status [flags]")
	}
	verb := args[0]
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c, err := kafkalocal.New(kafkalocal.Config{Dir: *dir, POM: *pom, ReadyTimeout: *timeout, Out: out, Security: *security, PortOffset: *offset})
	if err != nil {
		return err
	}
	switch verb {
	case "up":
		start := time.Now()
		if err := c.Up(ctx); err != nil {
			return err
		}
		fmt.Fprintf(out, "Apache Kafka %s: %d KRaft nodes up in %v (data and logs in %s; make kafka-down stops them)\n",
			c.Version(), c.Nodes(), time.Since(start).Round(100*time.Millisecond), *dir)
		fmt.Fprintf(out, "SWITCHBOARD_BROKERS=%s\n", c.Brokers())
		if c.Secured() {
			fmt.Fprintf(out, "SASL_SSL (SCRAM-SHA-512, PLAIN, OAUTHBEARER) on %s, mTLS on the ports 100 above; a client env file per principal, e.g.\n  set -a; . %s; set +a\n",
				c.Brokers(), c.EnvFile(kafkalocal.PrincipalAdmin, kafkalocal.AuthSCRAM))
		}
		return nil
	case "down":
		if n := c.Running(); n == 0 {
			fmt.Fprintln(out, "no node of the local cluster is running")
			return nil
		}
		if err := c.Down(*timeout); err != nil {
			return err
		}
		fmt.Fprintln(out, "stopped; data kept in", *dir, "(rm -rf it to start afresh)")
		return nil
	case "status":
		for i := range c.Nodes() {
			fmt.Fprintf(out, "node %d: pid %d\n", i+1, c.PID(i))
		}
		if err := kafkalocal.CheckCluster(ctx, c.Admin(), c.Nodes()); err != nil {
			return fmt.Errorf("cluster at %s: %w", c.Brokers(), err)
		}
		fmt.Fprintf(out, "SWITCHBOARD_BROKERS=%s\n", c.Brokers())
		return nil
	}
	return fmt.Errorf("stack kafka: unknown command %q (up, down, status)", verb)
}
