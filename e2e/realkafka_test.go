//go:build integration || kafka

// The real-Kafka suite: the end-to-end, crash, scaling and admission tests
// of this package, written once and run here on Apache Kafka, plus what
// only a real cluster shows (a node killed under load, KIP-848 groups,
// provisioning, the 4,096-byte commit-metadata limit). Each test takes its
// cluster from realKafka or realBrokers: `make test-kafka` (build tag
// kafka) gives the local three-node cluster (kafka_local_test.go),
// `make test-integration` (tag integration) a container per test
// (kafka_integration_test.go).
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/keyorder"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestRealKafkaMessagesFlow: HTTP in, SSE out, streamed and not, live and
// replayed, every service stopping cleanly (TestMessagesFlowThroughTheStack).
func TestRealKafkaMessagesFlow(t *testing.T) {
	messagesFlow(t, realKafka(t))
}

// TestRealKafkaBadInput: ingress's errors, and a poison record dead-lettered
// while the conversation goes on (TestBadInput).
func TestRealKafkaBadInput(t *testing.T) {
	badInput(t, realKafka(t))
}

// TestRealKafkaCrashedWorkerLosesNothing: kill -9 of a router-worker under
// load; nothing lost, order kept, duplicates bounded by the work above the
// committed offsets at the kill (TestCrashedWorkerLosesNothing).
func TestRealKafkaCrashedWorkerLosesNothing(t *testing.T) {
	checkCrashDuplicates(t, crashUnderLoadOn(t, realKafka(t), []string{"--max-in-flight", "64", "--commit-interval", "200ms"}, false))
}

// TestRealKafkaCrashWithExactlyOnce: the same kill -9 with --exactly-once on
// real transactions; a read_committed reader sees 0 duplicate terminal
// results (TestCrashWithExactlyOnce).
func TestRealKafkaCrashWithExactlyOnce(t *testing.T) {
	if dups := crashUnderLoadOn(t, realKafka(t), []string{"--max-in-flight", "64", "--exactly-once"}, true).duplicates; dups != 0 {
		t.Errorf("%d duplicate answers in read_committed output, want 0", dups)
	}
}

// TestRealKafkaEgressFailover: kill -9 of an egress mid-stream; its clients
// resume on the other with Last-Event-ID and see every answer once, in
// order (TestEgressFailover).
func TestRealKafkaEgressFailover(t *testing.T) {
	egressFailover(t, realKafka(t))
}

// TestRealKafkaWebhooksSurviveEgressKill: kill -9 of an egress delivering
// webhooks, its restart under the same static member ID, and a second
// egress joining the webhook group under way, on a real group coordinator:
// every result acknowledged at least once, conversation order kept, one
// webhook-id per result (TestWebhooksSurviveEgressKill).
func TestRealKafkaWebhooksSurviveEgressKill(t *testing.T) {
	webhooksSurviveEgressKill(t, realKafka(t))
}

// TestRealKafkaResumeAfterEgressKill is TestResumeAfterEgressKill on
// Apache Kafka: the replay pool's readers pause and seek their partitions
// between passes on a real cluster's fetch sessions.
func TestRealKafkaResumeAfterEgressKill(t *testing.T) {
	resumeAfterEgressKill(t, realKafka(t))
}

// TestRealKafkaAdmission: lag-driven admission on the group's real lag
// (TestAdmissionWithRouterStopped).
func TestRealKafkaAdmission(t *testing.T) {
	admissionWithRouterStopped(t, realKafka(t))
}

// TestRealKafkaScaling: router-workers scaled 1 -> 3 -> 1 under load, with
// the classic protocol (cooperative-sticky) and with KIP-848
// (--group-protocol consumer): nothing lost, order kept, nothing answered
// twice (the hand-overs are graceful), and every worker got partitions.
func TestRealKafkaScaling(t *testing.T) {
	for _, protocol := range []string{"classic", "consumer"} {
		t.Run(protocol, func(t *testing.T) {
			base := realKafka(t)
			base.Routers, base.ModelLatency, base.ModelJitter = 1, 20*time.Millisecond, 10*time.Millisecond
			base.RouterArgs = []string{"--max-in-flight", "64", "--group-protocol", protocol}
			s := apptest.StartStack(t, bin, base)
			ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
			defer cancel()
			l := load{convs: 150, rounds: 16, pause: 100 * time.Millisecond}
			l.run(ctx, t, s, func(round int) {
				switch round {
				case 3:
					s.StartRouter() //nolint:contextcheck // bounded by the test's own context and a readiness timeout
					s.StartRouter() //nolint:contextcheck // as above
					// Real group timing: the new members get partitions
					// only after the members rejoin (a heartbeat away,
					// two rounds with cooperative-sticky).
					if err := apptest.Wait(time.Minute, func() error {
						for _, r := range s.Routers {
							if !strings.Contains(r.Output(), `"partitions assigned","partitions":{"`+s.TopicPrefix) {
								return fmt.Errorf("%s has no partitions yet", r.Name)
							}
						}
						return nil
					}); err != nil {
						t.Errorf("the work did not spread over the three workers: %v", err)
					}
					checkGroupType(ctx, t, s, protocol)
				case 10:
					for _, r := range s.Routers[1:] {
						if err := r.Stop(30 * time.Second); err != nil {
							t.Errorf("stopping %s: %v", r.Name, err)
						}
					}
				}
			})
			if dups := l.verdict(ctx, t, s, false); dups != 0 {
				t.Errorf("%d requests answered twice across graceful rebalances, want 0", dups)
			}
		})
	}
}

// checkGroupType checks that the router group is of the type the protocol
// makes (Kafka lists KIP-848 groups as "consumer", the others as
// "classic").
func checkGroupType(ctx context.Context, t *testing.T, s *apptest.Stack, protocol string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	groups, err := kadm.NewClient(cl).ListGroupsByType(ctx, []string{protocol})
	if err != nil {
		t.Errorf("list groups: %v", err)
		return
	}
	if _, ok := groups[s.RouterGroup]; !ok {
		t.Errorf("group %s is not a %s group (%s groups: %v)", s.RouterGroup, protocol, protocol, groups.Groups())
	}
}

// TestRealKafkaNodeKilled: one of the three Kafka nodes, the router group's
// coordinator, is killed with SIGKILL under load and restarted: leaders
// move, producers (acks=all, idempotent) retry, the group finds its new
// coordinator; every request is answered, every conversation in order.
func TestRealKafkaNodeKilled(t *testing.T) {
	base := realKafka(t)
	if base.Cluster == nil {
		t.Skip("the cluster's nodes are not local (SWITCHBOARD_TEST_BROKERS or a container): none can be killed")
	}
	c := base.Cluster
	t.Cleanup(func() { // never leave the shared cluster a node short
		if c.PID(0) == 0 || c.Running() < c.Nodes() {
			for i := range c.Nodes() {
				if c.PID(i) == 0 {
					_ = c.StartNode(i)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := c.WaitReady(ctx, c.Nodes()); err != nil {
				t.Errorf("restoring the cluster: %v", err)
			}
		}
	})
	base.Routers, base.ModelLatency, base.ModelJitter = 1, 20*time.Millisecond, 10*time.Millisecond
	base.RouterArgs = []string{"--max-in-flight", "64", "--commit-interval", "200ms"}
	s := apptest.StartStack(t, bin, base)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	victim := coordinatorNode(ctx, t, s)
	var killedAt time.Time
	l := load{convs: 150, rounds: 16, pause: 100 * time.Millisecond}
	l.run(ctx, t, s, func(round int) {
		switch round {
		case 4:
			if err := c.Kill(victim); err != nil {
				t.Fatalf("kill node %d: %v", victim+1, err)
			}
			killedAt = time.Now()
		case 10:
			if err := c.StartNode(victim); err != nil {
				t.Fatalf("restart node %d: %v", victim+1, err)
			}
		}
	})
	if err := c.WaitReady(ctx, c.Nodes()); err != nil {
		t.Fatal(err)
	}
	dups := l.verdict(ctx, t, s, false)
	t.Logf("node %d (the group coordinator) killed for %v under load: %d requests, all answered in order, %d answered twice",
		victim+1, time.Since(killedAt).Round(time.Second), l.convs*l.rounds, dups)
}

// TestRealKafkaStaticMembership: a router-worker killed with SIGKILL and
// restarted under the same --instance-id gets its partitions back at once
// (KIP-345): the answers resume well within the 20 s session timeout. The
// control, without an instance ID, waits for the dead member's session to
// expire first, which shows the check can fail.
func TestRealKafkaStaticMembership(t *testing.T) {
	const session = 20 * time.Second
	for _, tc := range []struct {
		name   string
		args   []string
		static bool
	}{
		{"static", []string{"--instance-id", "router-static-1"}, true},
		{"dynamic", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := realKafka(t)
			base.Routers, base.ModelLatency = 1, 5*time.Millisecond
			base.RouterArgs = append([]string{"--session-timeout", session.String()}, tc.args...)
			s := apptest.StartStack(t, bin, base)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			l := load{convs: 50, rounds: 4, pause: 50 * time.Millisecond}
			var restarted time.Time
			l.run(ctx, t, s, func(round int) {
				if round != 1 {
					return
				}
				s.Routers[0].Kill()
				// From the restart, not from its readiness: /readyz
				// answers only once the member holds partitions.
				restarted = time.Now()
				if err := s.Launcher.Start(ctx, s.Routers[0].Name); err != nil {
					t.Fatal(err)
				}
			})
			l.verdict(ctx, t, s, false)
			took := time.Since(restarted)
			t.Logf("all answered %v after the restart (session timeout %v)", took.Round(100*time.Millisecond), session)
			if tc.static && took > session/2 {
				t.Errorf("static member: answers resumed %v after the restart, want well within the %v session timeout", took, session)
			}
			if !tc.static && took < session/2 {
				t.Errorf("dynamic member: answers resumed after %v, before the dead member's %v session could expire: the control shows nothing", took, session)
			}
		})
	}
}

// TestRealKafkaRedrive: requests for a model no backend serves are answered
// with an error and dead-lettered (unknown_model); once the backends file
// serves the model (an alias, reloaded without restart), bin/redrive sends
// them back in conversation order and they are answered, in that order.
func TestRealKafkaRedrive(t *testing.T) {
	s := apptest.StartStack(t, bin, realKafka(t))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const n = 5
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ConsumeTopics(s.Topic("deadletter"), s.Topic("results")))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Straight to Kafka, as a direct producer would: ingress refuses a
	// model no backend serves at the door.
	var failed []string
	for i := range n {
		id := fmt.Sprintf("redrive-1/%d", i)
		rec, err := envelope.EncodeRequest(s.Topic("requests.interactive"), &pb.Request{RequestId: id, ConversationId: "redrive-1",
			Lane: envelope.LaneInteractive, Model: "later", Messages: []*pb.Message{{Role: "user", Content: fmt.Sprintf("message %d", i)}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		failed = append(failed, id)
	}
	dead := map[string]bool{}
	var answers []*pb.Result // answers to re-driven requests, in the results topic's order
	poll := func(done func() bool) {
		t.Helper()
		for !done() {
			fetches := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("time limit: %d dead letters, %d answers", len(dead), len(answers))
			}
			fetches.EachRecord(func(rec *kgo.Record) {
				if rec.Topic == s.Topic("deadletter") {
					var dl pb.DeadLetter
					if proto.Unmarshal(rec.Value, &dl) == nil && dl.GetReason() == "unknown_model" {
						dead[dl.GetRequestId()] = true
					}
					return
				}
				res, err := envelope.DecodeResult(rec)
				if err == nil && res.GetMetadata()["redrive_of"] != "" && res.GetChunk() == nil {
					answers = append(answers, res)
				}
			})
		}
	}
	poll(func() bool { return len(dead) == n })

	// The fix: the model becomes an alias of one a backend serves.
	f, err := os.OpenFile(s.Launcher.BackendsFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("aliases:\n  later: sim\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := apptest.Wait(30*time.Second, func() error {
		if !strings.Contains(s.Routers[0].Output(), "backends file reloaded") {
			return errors.New("router-worker has not reloaded its backends file")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	out, err := exec.CommandContext(ctx, bin["redrive"], append([]string{"--brokers", s.Brokers, "--group", s.RouterGroup + "-redrive",
		"--reason", "unknown_model", "--execute"}, s.TopicArgs()...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	poll(func() bool { return len(answers) >= n })
	for i, res := range answers {
		if got := res.GetMetadata()["redrive_of"]; got != failed[i] {
			t.Errorf("answer %d re-drives %s, want %s: out of order", i, got, failed[i])
		}
		if res.GetFinal() == nil {
			t.Errorf("answer %d to a re-driven request is not a final result: %v", i, res)
		}
	}
}

// coordinatorNode returns the index of the node coordinating the stack's
// router group (node 1 when it cannot be learned).
func coordinatorNode(ctx context.Context, t *testing.T, s *apptest.Stack) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, r := range kadm.NewClient(cl).FindGroupCoordinators(ctx, s.RouterGroup) {
		if r.Err == nil && r.NodeID >= 1 && r.NodeID <= 3 {
			return int(r.NodeID) - 1
		}
	}
	return 0
}

// TestRealKafkaTopics: topics.yaml provisioning on the real cluster: topics
// are created with their partitions, replication and configs; a second run
// is a no-op; a larger count grows a topic; a config changed behind the
// file's back is reported as drift and left alone.
func TestRealKafkaTopics(t *testing.T) {
	brokers := realBrokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	meta, err := adm.BrokerMetadata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rf := min(3, len(meta.Brokers))
	prefix := fmt.Sprintf("it%06x-topics.", time.Now().UnixNano()&0xffffff)
	t.Cleanup(func() { deleteTopics(t, brokers, prefix) })
	dir := t.TempDir()
	spec := func(partitions int) string {
		path := filepath.Join(dir, fmt.Sprintf("topics-%d.yaml", partitions))
		body := fmt.Sprintf("prefix: %s\ndefaults:\n  partitions: 2\n  replication_factor: %d\n  configs:\n    min.insync.replicas: \"%d\"\n"+
			"topics:\n  - name: requests.interactive\n    partitions: %d\n    configs:\n      retention.ms: \"3600000\"\n"+
			"  - name: requests.batch\n  - name: results\n  - name: deadletter\n", prefix, rf, max(1, rf-1), partitions)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	provision := func(file string) string {
		out, err := exec.CommandContext(ctx, bin["topics"], "--brokers", brokers, "--topics-file", file).CombinedOutput()
		if err != nil {
			t.Fatalf("topics: %v\n%s", err, out)
		}
		return string(out)
	}
	// hasPartitions waits until topic has n partitions of rf replicas
	// each (a change takes a moment to reach every broker's metadata).
	hasPartitions := func(topic string, n int) error {
		return apptest.Wait(30*time.Second, func() error {
			td, err := adm.ListTopics(ctx, topic)
			if err != nil {
				return err
			}
			d := td[topic]
			if d.Err != nil {
				return d.Err
			}
			if len(d.Partitions) != n {
				return fmt.Errorf("%d partitions, want %d", len(d.Partitions), n)
			}
			for _, p := range d.Partitions {
				if len(p.Replicas) != rf {
					return fmt.Errorf("partition %d has %d replicas, want %d", p.Partition, len(p.Replicas), rf)
				}
			}
			return nil
		})
	}

	a := prefix + "requests.interactive"
	if out := provision(spec(3)); strings.Count(out, "created  ") != 4 {
		t.Errorf("first run:\n%s\nwant four topics created", out)
	}
	if err := hasPartitions(a, 3); err != nil {
		t.Errorf("%s: %v", a, err)
	}
	for _, l := range []string{"requests.batch", "results", "deadletter"} {
		if err := hasPartitions(prefix+l, 2); err != nil {
			t.Errorf("%s%s: %v", prefix, l, err)
		}
	}
	if out := provision(spec(3)); strings.Count(out, "in sync  ") != 4 || strings.Contains(out, "created  ") {
		t.Errorf("second run:\n%s\nwant four topics in sync, nothing created", out)
	}
	if out := provision(spec(6)); !strings.Contains(out, "grown    "+a+": 3 -> 6 partitions") {
		t.Errorf("grow run:\n%s\nwant %s grown from 3 to 6", out, a)
	}
	if err := hasPartitions(a, 6); err != nil {
		t.Errorf("%s after growing: %v", a, err)
	}
	if _, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("60000")}}, a); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`drift    %s: retention.ms = "60000" on the cluster, spec wants "3600000" (left as is)`, a)
	if err := apptest.Wait(30*time.Second, func() error {
		if out := provision(spec(6)); !strings.Contains(out, want) {
			return errors.New(out)
		}
		return nil
	}); err != nil {
		t.Errorf("drift run: %v, want %s", err, want)
	}
}

// TestRealKafkaCommitMetadataLimit: Apache Kafka refuses commit metadata
// over offset.metadata.max.bytes (4,096 by default), which kfake does not
// enforce; the key-ordered engine keeps its finished-offset map under its
// 3,584-byte bound even when the map is as fragmented as it can be, so its
// commits keep succeeding, admission holds (no loss), and once the blocked
// records finish the watermark reaches the end (no stall).
func TestRealKafkaCommitMetadataLimit(t *testing.T) {
	brokers := realBrokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	run := fmt.Sprintf("it%06x-meta", time.Now().UnixNano()&0xffffff)
	topic, group := run, run+"-bound"
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = adm.DeleteTopics(context.WithoutCancel(ctx), topic) }()

	// The broker's limit itself.
	commit := func(group string, size int) error {
		o := kadm.Offsets{}
		o.Add(kadm.Offset{Topic: topic, Partition: 0, At: 0, LeaderEpoch: -1, Metadata: strings.Repeat("m", size)})
		return adm.CommitAllOffsets(ctx, group, o)
	}
	// A new topic takes a moment to reach every broker's metadata.
	if err := apptest.Wait(30*time.Second, func() error { return commit(run+"-ok", 4096) }); err != nil {
		t.Errorf("4,096 bytes of metadata: %v, want accepted", err)
	}
	if err := commit(run+"-over", 4097); !errors.Is(err, kerr.OffsetMetadataTooLarge) {
		t.Errorf("4,097 bytes of metadata: err = %v, want OFFSET_METADATA_TOO_LARGE", err)
	}

	// The engine under the worst fragmentation: every record at an even
	// offset blocks until released, every odd one finishes at once, so each
	// finished offset is its own run in the map.
	const records = 6000
	recs := make([]*kgo.Record, records)
	for i := range recs {
		recs[i] = &kgo.Record{Key: fmt.Appendf(nil, "k%05d", i), Value: []byte("v")}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var mu sync.Mutex
	started := 0
	e, err := keyorder.New(keyorder.Config{
		Group:          group,
		Topics:         []string{topic},
		MaxInFlight:    records,
		HighMark:       records,
		CommitInterval: 200 * time.Millisecond,
		ClientOpts:     []kgo.Opt{kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.FetchMaxWait(100 * time.Millisecond)},
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
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return err
		}
		o, ok := offs.Lookup(topic, 0)
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
		offs, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return err
		}
		if o, _ := offs.Lookup(topic, 0); o.At != records {
			return fmt.Errorf("committed %d of %d", o.At, records)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// deleteTopics deletes the topics whose names start with prefix (best
// effort: a shared cluster should not fill up with test topics).
func deleteTopics(t *testing.T, brokers, prefix string) {
	deleteTopicsWith(t, kafkaconf.Config{Brokers: strings.Split(brokers, ",")}, prefix)
}

// deleteTopicsWith is deleteTopics on the cluster of kafka (TLS, SASL).
func deleteTopicsWith(t *testing.T, kafka kafkaconf.Config, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kafka.Opts(nil)...)
	if err != nil {
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		t.Logf("cleanup: list topics: %v", err)
		return
	}
	var del []string
	for _, name := range topics.Names() {
		if strings.HasPrefix(name, prefix) {
			del = append(del, name)
		}
	}
	if len(del) > 0 {
		if _, err := adm.DeleteTopics(ctx, del...); err != nil {
			t.Logf("cleanup: delete topics: %v", err)
		}
	}
}
