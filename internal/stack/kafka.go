package stack

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchboard-llm/switchboard/internal/acl"
	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
)

// Kafka choices of UseKafka.
const (
	// KafkaDevbroker is the embedded broker the stack starts itself.
	KafkaDevbroker = "devbroker"
	// KafkaApache is the local Apache Kafka cluster of `make kafka-up`
	// (internal/kafkalocal), which must be running.
	KafkaApache = "apache"
)

// UseKafka sets cfg's cluster from a choice: "devbroker" (or empty), "apache"
// (the local cluster under root/data/kafka, which must answer with all its
// brokers; lc its security and port offset), or comma-separated broker
// addresses of any other cluster.
func UseKafka(ctx context.Context, cfg *Config, choice, root string, lc kafkalocal.Config) error {
	switch choice {
	case "", KafkaDevbroker:
		cfg.Brokers, cfg.Cluster = "", nil
		return nil
	case KafkaApache:
		lc.Dir, lc.POM = filepath.Join(root, "data", "kafka"), filepath.Join(root, "deploy", "kafka-local", "pom.xml")
		c, err := kafkalocal.New(lc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := kafkalocal.CheckCluster(ctx, c.Admin(), c.Nodes()); err != nil {
			up := "make kafka-up"
			if c.Secured() {
				up += " KAFKA_SECURITY=" + kafkalocal.SecuritySASLSSL
			}
			return fmt.Errorf("stack: the local Apache Kafka cluster (%s) does not answer: %w; start it with %s", c.Brokers(), err, up)
		}
		cfg.Brokers, cfg.Cluster = c.Brokers(), c
		if c.Secured() {
			UseSecured(cfg, c, kafkalocal.AuthSCRAM)
		}
		return nil
	}
	if !strings.Contains(choice, ":") {
		return fmt.Errorf("stack: kafka %q: want devbroker, apache or host:port,…", choice)
	}
	cfg.Brokers, cfg.Cluster = choice, nil
	return nil
}

// UseSecured makes cfg's processes connect to the secured local cluster c,
// each as its own principal authenticated with auth (kafkalocal.Auths):
// topics as the admin, which also gives ingress, router-worker and egress
// their least-privilege ACLs (internal/acl) for the stack's topics and group.
func UseSecured(cfg *Config, c *kafkalocal.Cluster, auth string) {
	cfg.KafkaEnv = map[string][]string{
		"topics":    c.Env(kafkalocal.PrincipalAdmin, auth),
		ProcIngress: c.Env(kafkalocal.PrincipalIngress, auth),
		ProcRouter:  c.Env(kafkalocal.PrincipalRouter, auth),
		ProcEgress:  c.Env(kafkalocal.PrincipalEgress, auth),
	}
	cfg.ACLs = map[string]string{
		acl.RoleIngress: "User:" + kafkalocal.PrincipalIngress,
		acl.RoleRouter:  "User:" + kafkalocal.PrincipalRouter,
		acl.RoleEgress:  "User:" + kafkalocal.PrincipalEgress,
	}
}
