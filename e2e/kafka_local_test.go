//go:build kafka

// The real-Kafka suite (realkafka_test.go) on the local three-node Apache
// Kafka cluster (internal/kafkalocal, `make kafka-up`): `make test-kafka`.
// The suite uses, in order: the cluster at SWITCHBOARD_TEST_BROKERS; the
// local cluster when it already answers (left running); or a local cluster
// it starts itself and stops after the last test. When none can be had
// (no Java or Maven), each test skips and says why, except in CI
// (CI=true), where that is a failure. Every test gets topics (a prefix of
// its own) and a router group of its own, so tests and runs sharing the
// cluster do not see each other's records.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
)

var (
	localOnce    sync.Once
	localBrokers string
	localCluster *kafkalocal.Cluster // nil with SWITCHBOARD_TEST_BROKERS
	localErr     error
)

// localKafka returns the suite's cluster, starting it at the first call
// when needed.
func localKafka(t *testing.T) (string, *kafkalocal.Cluster) {
	t.Helper()
	localOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if b := os.Getenv("SWITCHBOARD_TEST_BROKERS"); b != "" {
			localBrokers, localErr = b, kafkalocal.Check(ctx, b, 1)
			return
		}
		c, err := kafkalocal.New(kafkalocal.Config{Dir: filepath.Join("..", "data", "kafka"),
			POM: filepath.Join("..", "deploy", "kafka-local", "pom.xml"), Out: os.Stderr, PortOffset: portOffset()})
		if err != nil {
			localErr = err
			return
		}
		localBrokers, localCluster = c.Brokers(), c
		if kafkalocal.Check(ctx, c.Brokers(), c.Nodes()) == nil {
			fmt.Fprintf(os.Stderr, "real-Kafka suite: using the running local cluster at %s\n", c.Brokers())
			return
		}
		fmt.Fprintln(os.Stderr, "real-Kafka suite: starting the local cluster (stopped again after the tests)")
		started := c.Running() == 0
		if localErr = c.Up(ctx); localErr == nil && started {
			afterAll = append(afterAll, func() {
				if err := c.Down(time.Minute); err != nil {
					fmt.Fprintln(os.Stderr, "stopping the local Kafka cluster:", err)
				}
			})
		}
	})
	if localErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no Apache Kafka cluster for the real-Kafka suite: %v", localErr)
		}
		t.Skipf("no Apache Kafka cluster (%v): the real-Kafka test did not run; make kafka-up, or set SWITCHBOARD_TEST_BROKERS", localErr)
	}
	return localBrokers, localCluster
}

// portOffset is KAFKA_PORT_OFFSET (make test-kafka KAFKA_PORT_OFFSET=1000):
// the local clusters' ports moved, for a second checkout on one machine.
func portOffset() int {
	n, _ := strconv.Atoi(os.Getenv("KAFKA_PORT_OFFSET"))
	return n
}

var nameRE = regexp.MustCompile(`[^a-z0-9]+`)

// realKafka shapes a stack on the suite's cluster with topics and a router
// group of t's own (deleted again at cleanup), the project's topics.yaml
// (replication factor 3, min.insync.replicas 2) and Cluster set when the
// nodes are local (so a test can crash one).
func realKafka(t *testing.T) apptest.StackOptions {
	t.Helper()
	brokers, cluster := localKafka(t)
	name := strings.TrimPrefix(strings.ToLower(t.Name()), "testrealkafka")
	name = strings.Trim(nameRE.ReplaceAllString(name, "-"), "-")
	run := fmt.Sprintf("it%06x-%s", time.Now().UnixNano()&0xffffff, name)
	prefix := run + "."
	t.Cleanup(func() { deleteTopics(t, brokers, prefix) })
	return apptest.StackOptions{Brokers: brokers, Cluster: cluster, TopicPrefix: prefix, RouterGroup: run + "-router"}
}

// realBrokers is the suite's cluster, for tests that make their own topics.
func realBrokers(t *testing.T) string {
	t.Helper()
	b, _ := localKafka(t)
	return b
}
