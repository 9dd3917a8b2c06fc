//go:build kafka

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
)

// Ports of the drill's two single-node clusters (plus KAFKA_PORT_OFFSET),
// clear of the suite's cluster (29092-29594).
const (
	eastPort, eastController = 29892, 29992
	westPort, westController = 29893, 29993
)

// region starts a fresh single-node cluster named name (its data wiped
// first), stopped at cleanup. The jars are the suite's.
func region(ctx context.Context, t *testing.T, name, clusterID string, port, controller int) *kafkalocal.Cluster {
	t.Helper()
	root := filepath.Join("..", "data", "kafka")
	v, err := kafkalocal.Version(filepath.Join("..", "deploy", "kafka-local", "pom.xml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "regions", name)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	c, err := kafkalocal.New(kafkalocal.Config{Dir: dir, POM: filepath.Join("..", "deploy", "kafka-local", "pom.xml"),
		Lib: filepath.Join(root, "lib-"+v), Ports: []int{port + portOffset()}, ControllerPorts: []int{controller + portOffset()},
		ClusterID: clusterID, JavaOpts: []string{"-Xms128m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:MaxDirectMemorySize=128m"},
		Out: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Down(30 * time.Second); err != nil {
			t.Errorf("stopping region %s: %v", name, err)
		}
	})
	if err := c.Up(ctx); err != nil {
		t.Fatalf("region %s: %v", name, err)
	}
	return c
}

// singleNodeTopics is topics.yaml for a cluster of one node.
func singleNodeTopics(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "topics.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "replication_factor: 3", "replication_factor: 1", 1)
	s = strings.Replace(s, `min.insync.replicas: "2"`, `min.insync.replicas: "1"`, 1)
	if s == string(b) {
		t.Fatal("topics.yaml no longer has the replication settings this test rewrites")
	}
	path := filepath.Join(t.TempDir(), "topics.yaml")
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// conversationRecords counts conv's records in brokers' results topic
// (read committed, as MirrorMaker 2 copies them).
func conversationRecords(ctx context.Context, brokers, topic, conv string) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	n := 0
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == conv {
				n++
			}
		})
	}
	return n, nil
}

// TestRealKafkaRegionFailover is the multi-region drill
// (docs/MULTI-REGION.md): two clusters, east (active) and west (standby),
// MirrorMaker 2 from east to west. A client follows a conversation on
// east's egress and stops after its second answer; the answers go on,
// reach west through the mirror, and east dies (kill -9). The client
// resumes with its last cursor on an egress in west: it gets exactly the
// events it had not seen, in order, though west holds them at other
// offsets. Router-worker runs with --exactly-once, so east's results
// topic has transaction markers that west's copy does not: no offset of
// the conversation is the same in both.
func TestRealKafkaRegionFailover(t *testing.T) {
	for _, tool := range []string{"java", "mvn"} {
		if _, err := exec.LookPath(tool); err != nil && os.Getenv("CI") != "true" {
			t.Skipf("the drill starts two Apache Kafka clusters and MirrorMaker 2 itself: %s not found", tool)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	var east, west *kafkalocal.Cluster
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		east = region(gctx, t, "east", "RWFzdFJlZ2lvbkNsdXN0ZQ", eastPort, eastController)
		return nil
	})
	g.Go(func() error {
		west = region(gctx, t, "west", "V2VzdFJlZ2lvbkNsdXN0ZQ", westPort, westController)
		return nil
	})
	_ = g.Wait()
	if t.Failed() {
		t.FailNow()
	}
	topics := singleNodeTopics(t)
	s := apptest.StartStack(t, bin, apptest.StackOptions{Brokers: east.Brokers(), TopicsFile: topics,
		ModelLatency: 20 * time.Millisecond, RouterArgs: []string{"--exactly-once"}})
	// West's topics are provisioned as east's (MirrorMaker 2 would create
	// them with its own settings otherwise).
	if out, err := exec.CommandContext(ctx, bin["topics"], append([]string{"--brokers", west.Brokers()}, s.TopicArgs()...)...).CombinedOutput(); err != nil {
		t.Fatalf("topics on west: %v\n%s", err, out)
	}
	mm, err := kafkalocal.NewMirror(kafkalocal.MirrorConfig{Dir: filepath.Join("..", "data", "kafka", "regions", "mirror"),
		POM: filepath.Join("..", "deploy", "kafka-mirror", "pom.xml"), Source: "east", Target: "west",
		SourceBrokers: east.Brokers(), TargetBrokers: west.Brokers(), Topics: `switchboard\..*`, Groups: s.RouterGroup,
		Out: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := mm.Stop(20 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			b, _ := os.ReadFile(mm.LogFile())
			t.Logf("---- MirrorMaker 2 log (end) ----\n%s", tailString(string(b), 6000))
		}
	})
	probeTopic := s.TopicPrefix + "drill-probe"
	if _, err := kadm.NewClient(mustKgo(t, kgo.SeedBrokers(east.Brokers()))).CreateTopic(ctx, 1, 1, nil, probeTopic); err != nil {
		t.Fatalf("probe topic: %v", err)
	}
	if err := mm.Start(ctx); err != nil {
		t.Fatal(err)
	}

	// Three answers on one conversation, followed on east.
	const conv = "drill"
	var ids []string
	for i := range 3 {
		ack, err := postMessage(ctx, s.IngressURL, conv, fmt.Sprintf(`{"model":"sim","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"drill message %d"}]}`, i))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ack.RequestID)
	}
	var all []apptest.Event
	url := "/v1/conversations/" + conv + "/events?request_id=" + ids[2]
	if err := apptest.ReadSSE(ctx, s.EgressURL+url, "", nil, func(ev apptest.Event) bool {
		if ev.Name != "end" {
			all = append(all, ev)
		}
		return ev.Name != "end"
	}); err != nil {
		t.Fatal(err)
	}
	// The client stopped reading after the second answer.
	cut, terminals := -1, 0
	for i, ev := range all {
		if ev.Name == "result" || ev.Name == "error" {
			if terminals++; terminals == 2 {
				cut = i
				break
			}
		}
	}
	if cut < 0 || cut == len(all)-1 {
		t.Fatalf("east's stream: %d events, want three answers with chunks", len(all))
	}
	cursor := all[cut].ID

	// Everything crossed, then east dies.
	answered := time.Now()
	var inEast, inWest int
	if err := apptest.Wait(2*time.Minute, func() error {
		if inEast, err = conversationRecords(ctx, east.Brokers(), s.Topic("results"), conv); err != nil {
			return err
		}
		if inWest, err = conversationRecords(ctx, west.Brokers(), s.Topic("results"), conv); err != nil {
			return err
		}
		if inWest < inEast {
			return fmt.Errorf("west holds %d of east's %d results of the conversation", inWest, inEast)
		}
		return nil
	}); err != nil {
		t.Fatalf("mirroring: %v", err)
	}
	t.Logf("west held every result of the conversation %v after east's last answer was read (polled every ~3s)", time.Since(answered).Round(time.Millisecond))
	mirrorLag(ctx, t, east.Brokers(), west.Brokers(), probeTopic)
	if err := east.Kill(0); err != nil {
		t.Fatal(err)
	}
	t.Logf("east killed; west holds the conversation's %d results", inWest)

	// The client resumes in west.
	port, admin := apptest.FreePort(t), apptest.FreePort(t)
	apptest.Start(t, "egress-west", bin["egress"], append([]string{"--addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--admin-addr", fmt.Sprintf("127.0.0.1:%d", admin), "--brokers", west.Brokers(), "--tenants", s.TenantsFile},
		s.TopicArgs()...)...)
	if err := apptest.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", admin), time.Minute); err != nil {
		t.Fatal(err)
	}
	var resumed []apptest.Event
	// A client that resumed at the wrong place would wait for events that
	// never come: bounded, so that the test fails soon.
	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	defer rcancel()
	if err := apptest.ReadSSE(rctx, fmt.Sprintf("http://127.0.0.1:%d%s", port, url), cursor, nil, func(ev apptest.Event) bool {
		if ev.Name != "end" {
			resumed = append(resumed, ev)
		}
		return ev.Name != "end"
	}); err != nil {
		t.Fatalf("resuming in west: %v (got %v)", err, eventNames(resumed))
	}
	want := all[cut+1:]
	if len(resumed) != len(want) {
		t.Fatalf("resumed in west: %d events, want the %d after the cursor\ngot:  %v\nwant: %v", len(resumed), len(want), eventNames(resumed), eventNames(want))
	}
	for i := range want {
		if resumed[i].Name != want[i].Name || resumed[i].Data != want[i].Data {
			t.Errorf("event %d in west: %s %s, want %s %s", i, resumed[i].Name, resumed[i].Data, want[i].Name, want[i].Data)
		}
		if resumed[i].ID == want[i].ID {
			t.Errorf("event %d has east's cursor in west", i)
		}
	}
}

// mirrorLag measures MirrorMaker 2's replication lag, the drill's RPO: 20
// probe records written to east's probe topic (made before MirrorMaker 2
// started), each timed from its timestamp to its arrival in west (one
// machine, one clock). It logs the median and the maximum.
func mirrorLag(ctx context.Context, t *testing.T, east, west, topic string) {
	t.Helper()
	p := mustKgo(t, kgo.SeedBrokers(east), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	r := mustKgo(t, kgo.SeedBrokers(west), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	const probes = 20
	go func() {
		for i := range probes {
			_ = p.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(i))}).FirstErr()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	rctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var lags []time.Duration
	for len(lags) < probes && rctx.Err() == nil {
		r.PollFetches(rctx).EachRecord(func(rec *kgo.Record) { lags = append(lags, time.Since(rec.Timestamp)) })
	}
	if len(lags) < probes {
		t.Fatalf("only %d of %d probe records reached west", len(lags), probes)
	}
	slices.Sort(lags)
	t.Logf("MirrorMaker 2 lag east -> west over %d probes: median %v, max %v", probes,
		lags[probes/2].Round(time.Millisecond), lags[probes-1].Round(time.Millisecond))
}

func mustKgo(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func eventNames(evs []apptest.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Name
	}
	return out
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
