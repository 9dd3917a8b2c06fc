//go:build integration && !kafka

// The real-Kafka suite (realkafka_test.go) on Apache Kafka in a container:
// `make test-integration` starts one fresh single-broker KRaft cluster per
// test with testcontainers-go, for machines with a Docker engine. Without
// one every test skips and says why. SWITCHBOARD_KAFKA_IMAGE overrides the
// image (default apache/kafka at the version of deploy/kafka-local/pom.xml).
// `make test-kafka` (the kafka build tag) runs the same tests on the local
// three-node cluster instead (kafka_local_test.go).
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
)

var (
	dockerOnce sync.Once
	dockerErr  error
)

// dockerReachable reports, once per run, why testcontainers cannot reach a
// Docker engine (nil: it can). testcontainers panics when it finds no
// Docker host at all; that is a "no" too.
func dockerReachable(ctx context.Context) error {
	dockerOnce.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				dockerErr = fmt.Errorf("%v", r)
			}
		}()
		provider, err := testcontainers.NewDockerProvider()
		if err != nil {
			dockerErr = err
			return
		}
		defer provider.Close()
		dockerErr = provider.Health(ctx)
	})
	return dockerErr
}

// startKafka starts a one-broker KRaft Apache Kafka for t and returns its
// address, or skips t when no Docker engine is reachable. The broker
// listens on a fixed free port mapped 1:1, so it can advertise the address
// clients use; the group minimum session timeout is lowered to 1s so the
// crash tests' 3s session timeout is accepted.
func startKafka(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := dockerReachable(ctx); err != nil {
		t.Skipf("no Docker engine reachable (%v): the real-Kafka test did not run", err)
	}
	image := os.Getenv("SWITCHBOARD_KAFKA_IMAGE")
	if image == "" {
		v, err := kafkalocal.Version("../deploy/kafka-local/pom.xml")
		if err != nil {
			t.Fatal(err)
		}
		image = "apache/kafka:" + v
	}
	port := apptest.FreePort(t)
	p := nat.Port(fmt.Sprintf("%d/tcp", port))
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		Started: true,
		ContainerRequest: testcontainers.ContainerRequest{
			Image:        image,
			ExposedPorts: []string{string(p)},
			HostConfigModifier: func(hc *container.HostConfig) {
				hc.PortBindings = nat.PortMap{p: {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(port)}}}
			},
			Env: map[string]string{
				"CLUSTER_ID":                                     "switchboard-itest-0001",
				"KAFKA_NODE_ID":                                  "1",
				"KAFKA_PROCESS_ROLES":                            "broker,controller",
				"KAFKA_LISTENERS":                                fmt.Sprintf("PLAINTEXT://:%d,CONTROLLER://:9093", port),
				"KAFKA_ADVERTISED_LISTENERS":                     fmt.Sprintf("PLAINTEXT://127.0.0.1:%d", port),
				"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
				"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
				"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9093",
				"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
				"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
				"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
				"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
				"KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS":             "1000",
				"KAFKA_AUTO_CREATE_TOPICS_ENABLE":                "false",
			},
			WaitingFor: wait.ForLog("Kafka Server started").WithStartupTimeout(2 * time.Minute),
		},
	})
	if c != nil {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), time.Minute)
			defer cancel()
			if err := c.Terminate(ctx); err != nil {
				t.Logf("terminate kafka container: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("start %s: %v", image, err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// oneBrokerTopics writes topics.yaml adapted to a one-broker cluster
// (replication factor 1, min.insync.replicas 1) and returns its path.
func oneBrokerTopics(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../topics.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, repl := range map[string]string{"replication_factor: 3": "replication_factor: 1", `min.insync.replicas: "2"`: `min.insync.replicas: "1"`} {
		if !strings.Contains(s, old) {
			t.Fatalf("topics.yaml no longer holds %q: update oneBrokerTopics", old)
		}
		s = strings.ReplaceAll(s, old, repl)
	}
	path := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// realKafka is a fresh one-broker container cluster for t, with topics of
// replication factor 1. Cluster stays nil: a node cannot be crashed here.
func realKafka(t *testing.T) apptest.StackOptions {
	t.Helper()
	return apptest.StackOptions{Brokers: startKafka(t), TopicsFile: oneBrokerTopics(t)}
}

// realBrokers is a fresh one-broker container cluster for t.
func realBrokers(t *testing.T) string {
	t.Helper()
	return startKafka(t)
}
