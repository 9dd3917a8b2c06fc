package stack

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

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
// brokers), or comma-separated broker addresses of any other cluster.
func UseKafka(ctx context.Context, cfg *Config, choice, root string) error {
	switch choice {
	case "", KafkaDevbroker:
		cfg.Brokers, cfg.Cluster = "", nil
		return nil
	case KafkaApache:
		c, err := kafkalocal.New(kafkalocal.Config{Dir: filepath.Join(root, "data", "kafka"), POM: filepath.Join(root, "deploy", "kafka-local", "pom.xml")})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := kafkalocal.Check(ctx, c.Brokers(), c.Nodes()); err != nil {
			return fmt.Errorf("stack: the local Apache Kafka cluster (%s) does not answer: %w; start it with make kafka-up", c.Brokers(), err)
		}
		cfg.Brokers, cfg.Cluster = c.Brokers(), c
		return nil
	}
	if !strings.Contains(choice, ":") {
		return fmt.Errorf("stack: kafka %q: want devbroker, apache or host:port,…", choice)
	}
	cfg.Brokers, cfg.Cluster = choice, nil
	return nil
}
