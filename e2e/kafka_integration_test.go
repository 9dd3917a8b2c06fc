//go:build integration

// The real-Kafka suite: `make test-integration` runs the end-to-end and
// crash tests of this package against Apache Kafka in a container started
// with testcontainers-go (one fresh single-broker KRaft cluster per test),
// plus the 4,096-byte commit-metadata limit that the embedded broker does
// not enforce. Without a reachable Docker engine every test skips and says
// why. SWITCHBOARD_KAFKA_IMAGE overrides the image (default apache/kafka).
package e2e

import (
	"context"
	"errors"
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
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/keyorder"
)

const defaultKafkaImage = "apache/kafka:4.1.0"

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
		image = defaultKafkaImage
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

func realKafka(t *testing.T) apptest.StackOptions {
	t.Helper()
	return apptest.StackOptions{Brokers: startKafka(t), TopicsFile: oneBrokerTopics(t)}
}

func TestRealKafkaMessagesFlow(t *testing.T) {
	messagesFlow(t, realKafka(t))
}

func TestRealKafkaCrashedWorkerLosesNothing(t *testing.T) {
	checkCrashDuplicates(t, crashUnderLoadOn(t, realKafka(t), []string{"--max-in-flight", "64", "--commit-interval", "200ms"}, false))
}

func TestRealKafkaCrashWithExactlyOnce(t *testing.T) {
	if dups := crashUnderLoadOn(t, realKafka(t), []string{"--max-in-flight", "64", "--exactly-once"}, true).duplicates; dups != 0 {
		t.Errorf("%d duplicate answers in read_committed output, want 0", dups)
	}
}

func TestRealKafkaScalingUnderLoad(t *testing.T) {
	scalingUnderLoad(t, realKafka(t))
}

// TestRealKafkaCommitMetadataLimit: Apache Kafka refuses commit metadata
// over offset.metadata.max.bytes (4,096 by default), which kfake does not
// enforce; the key-ordered engine keeps its finished-offset map under its
// 3,584-byte bound even when the map is as fragmented as it can be, so its
// commits keep succeeding.
func TestRealKafkaCommitMetadataLimit(t *testing.T) {
	brokers := startKafka(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.DefaultProduceTopic("meta"), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "meta"); err != nil {
		t.Fatal(err)
	}

	// The broker's limit itself.
	commit := func(group string, size int) error {
		o := kadm.Offsets{}
		o.Add(kadm.Offset{Topic: "meta", Partition: 0, At: 0, LeaderEpoch: -1, Metadata: strings.Repeat("m", size)})
		return adm.CommitAllOffsets(ctx, group, o)
	}
	if err := commit("limit-ok", 4096); err != nil {
		t.Errorf("4,096 bytes of metadata: %v, want accepted", err)
	}
	if err := commit("limit-over", 4097); !errors.Is(err, kerr.OffsetMetadataTooLarge) {
		t.Errorf("4,097 bytes of metadata: err = %v, want OFFSET_METADATA_TOO_LARGE", err)
	}

	// The engine under the worst fragmentation: every record at an even
	// offset blocks until released, every odd one finishes at once, so each
	// finished offset is its own run in the map.
	const records = 6000
	recs := make([]*kgo.Record, records)
	for i := range recs {
		recs[i] = &kgo.Record{Key: []byte(fmt.Sprintf("k%05d", i)), Value: []byte("v")}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	started := 0
	e, err := keyorder.New(keyorder.Config{
		Group:          "metadata-bound",
		Topics:         []string{"meta"},
		MaxInFlight:    records,
		HighMark:       records,
		CommitInterval: 200 * time.Millisecond,
		ClientOpts:     []kgo.Opt{kgo.SeedBrokers(brokers), kgo.FetchMaxWait(100 * time.Millisecond)},
		Handler: func(ctx context.Context, rec *kgo.Record) error {
			mu.Lock()
			started++
			mu.Unlock()
			if rec.Offset%2 == 0 {
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("engine: %v", err)
		}
	}()

	// Wait until admission stops (the bound is reached: no record started
	// for two seconds) and a commit with the map has been accepted.
	var meta string
	last, since := -1, time.Now()
	if err := apptest.Wait(2*time.Minute, func() error {
		offs, err := adm.FetchOffsets(ctx, "metadata-bound")
		if err != nil {
			return err
		}
		o, ok := offs.Lookup("meta", 0)
		if !ok || o.Err != nil {
			return fmt.Errorf("no commit yet (%w)", o.Err)
		}
		meta = o.Metadata
		mu.Lock()
		n := started
		mu.Unlock()
		if n >= records {
			return fmt.Errorf("all %d records started: the metadata bound never held admission", n)
		}
		if n != last {
			last, since = n, time.Now()
		}
		if time.Since(since) < 2*time.Second || len(meta) < 512 {
			return fmt.Errorf("%d records started, metadata %d bytes: admission still moving", n, len(meta))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(meta) > 4096 {
		t.Errorf("committed metadata is %d bytes, over Kafka's 4,096", len(meta))
	}
	mu.Lock()
	t.Logf("admission held at %d of %d records with %d bytes of commit metadata accepted by Kafka", started, records, len(meta))
	mu.Unlock()

	// Released, everything finishes and the watermark reaches the end.
	close(release)
	if err := apptest.Wait(2*time.Minute, func() error {
		offs, err := adm.FetchOffsets(ctx, "metadata-bound")
		if err != nil {
			return err
		}
		if o, _ := offs.Lookup("meta", 0); o.At != records {
			return fmt.Errorf("committed %d of %d", o.At, records)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}
