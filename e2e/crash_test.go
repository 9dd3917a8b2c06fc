package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// load produces rounds of requests straight to the interactive topic: in
// round n every conversation gets its message n. Between rounds it calls
// between(n) (which may kill or start processes) and sleeps pause. tenant
// and stream, when set, go into every request (a stream client sees only
// its tenant's results).
type load struct {
	convs, rounds int
	pause         time.Duration
	tenant        string
	stream        bool
}

func (l load) run(ctx context.Context, t *testing.T, s *apptest.Stack, between func(round int)) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for n := range l.rounds {
		recs := make([]*kgo.Record, 0, l.convs)
		for c := range l.convs {
			conv := fmt.Sprintf("load-%03d", c)
			rec, err := envelope.EncodeRequest(s.Topic("requests.interactive"), &pb.Request{
				RequestId: fmt.Sprintf("%s/%02d", conv, n), ConversationId: conv, Lane: envelope.LaneInteractive, Tenant: l.tenant,
				Model: "sim", MaxTokens: 8, Stream: l.stream, Messages: []*pb.Message{{Role: "user", Content: fmt.Sprintf("%s %d", conv, n)}},
			})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, rec)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatalf("round %d: %v", n, err)
		}
		between(n)
		time.Sleep(l.pause)
	}
}

// verdict reads the results topic until every request of l has a terminal
// result, then checks that each conversation's answers came in order and
// returns how many terminal results were duplicates.
func (l load) verdict(ctx context.Context, t *testing.T, s *apptest.Stack, readCommitted bool) (duplicates int) {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(s.Brokers, ",")...),
		kgo.ConsumeTopics(s.Topic("results")), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]int{} // request ID -> terminal results
	first := map[string]*kgo.Record{}
	next := map[string]int{} // conversation -> next round expected
	want := l.convs * l.rounds
	for len(seen) < want {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d requests answered before the time limit", len(seen), want)
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			res, err := envelope.DecodeResult(rec)
			if err != nil {
				t.Errorf("undecodable result at %d/%d: %v", rec.Partition, rec.Offset, err)
				return
			}
			if res.GetChunk() != nil {
				return
			}
			if res.GetError() != nil {
				t.Errorf("request %s failed: %v", res.GetRequestId(), res.GetError())
			}
			id := res.GetRequestId()
			seen[id]++
			if seen[id] > 1 {
				duplicates++
				if duplicates <= 3 { // enough to tell which writers repeated it
					t.Logf("duplicate terminal result of %s at %d/%d: producer %d epoch %d, first at %d/%d by producer %d epoch %d, run %s",
						id, rec.Partition, rec.Offset, rec.ProducerID, rec.ProducerEpoch, first[id].Partition, first[id].Offset,
						first[id].ProducerID, first[id].ProducerEpoch, res.GetRunId())
				}
				return
			}
			first[id] = rec
			conv, round, _ := strings.Cut(id, "/")
			if got := fmt.Sprintf("%02d", next[conv]); round != got {
				t.Errorf("conversation %s: answer to message %s came when %s was due", conv, round, got)
			}
			next[conv]++
		})
	}
	return duplicates
}

// crashed is what a crash-under-load run saw.
type crashed struct {
	requests   int
	duplicates int // answers a reader saw more than once
	// atRisk counts the requests above the group's committed offsets
	// right after the kill: finished-but-uncommitted and in-flight work of
	// the killed worker is among them, so no more than these can be
	// answered twice, however slowly the machine committed.
	atRisk int
}

// crashUnderLoad runs the standard load against two router-workers started
// with routerArgs, kills one with SIGKILL after round 5, starts a new one
// after round 10, and reports the duplicate answers a reader (with
// read_committed or not) saw; verdict has checked loss and order.
func crashUnderLoad(t *testing.T, routerArgs []string, readCommitted bool) crashed {
	t.Helper()
	return crashUnderLoadOn(t, apptest.StackOptions{}, routerArgs, readCommitted)
}

// crashUnderLoadOn is crashUnderLoad on a stack shaped by base (its Kafka
// cluster and topics file; the rest is set here).
func crashUnderLoadOn(t *testing.T, base apptest.StackOptions, routerArgs []string, readCommitted bool) crashed {
	t.Helper()
	base.Routers, base.ModelLatency, base.ModelJitter = 2, 20*time.Millisecond, 10*time.Millisecond
	base.RouterArgs = append([]string{"--session-timeout", "3s"}, routerArgs...)
	s := apptest.StartStack(t, bin, base)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	l := load{convs: 150, rounds: 16, pause: 100 * time.Millisecond}
	var killed sync.Once
	atRisk := -1
	l.run(ctx, t, s, func(round int) {
		switch round {
		case 5:
			killed.Do(func() {
				s.Routers[0].Kill()
				atRisk = uncommitted(ctx, t, s)
			})
		case 10:
			s.StartRouter() //nolint:contextcheck // bounded by the test's own context inside StartRouter
		}
	})
	return crashed{requests: l.convs * l.rounds, duplicates: l.verdict(ctx, t, s, readCommitted), atRisk: atRisk}
}

// uncommitted returns how many request records lie at or above the router
// group's committed offsets (from the log start where nothing is committed).
func uncommitted(ctx context.Context, t *testing.T, s *apptest.Stack) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := []string{s.Topic("requests.interactive"), s.Topic("requests.batch")}
	committed, err := adm.FetchOffsetsForTopics(ctx, s.RouterGroup, topics...)
	if err != nil {
		t.Fatalf("committed offsets: %v", err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		t.Fatalf("start offsets: %v", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatalf("end offsets: %v", err)
	}
	n := 0
	ends.Each(func(e kadm.ListedOffset) {
		from, _ := starts.Lookup(e.Topic, e.Partition)
		at := from.Offset
		if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.At >= 0 {
			at = c.At
		}
		n += int(max(0, e.Offset-at))
	})
	return n
}

// TestCrashedWorkerLosesNothing: two router-workers share the load; one is
// killed with SIGKILL mid-load and a new one starts later. Every request is
// answered, every conversation in order; duplicates are bounded by what
// was in flight or finished since the last commit at the kill.
func TestCrashedWorkerLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	t.Parallel() // waits more than it works: overlaps with the other waiting tests
	c := crashUnderLoad(t, []string{"--max-in-flight", "64", "--commit-interval", "200ms"}, false)
	checkCrashDuplicates(t, c)
}

// checkCrashDuplicates: the duplicates of an at-least-once crash are
// bounded by the work above the committed offsets at the kill.
func checkCrashDuplicates(t *testing.T, c crashed) {
	t.Helper()
	t.Logf("%d requests, %d duplicate answers after the kill, %d requests above the committed offsets at the kill",
		c.requests, c.duplicates, c.atRisk)
	if c.atRisk < 0 {
		t.Fatal("the kill never happened")
	}
	if c.duplicates > c.atRisk {
		t.Errorf("%d duplicates, more than the %d requests at risk at the kill", c.duplicates, c.atRisk)
	}
}

// TestCrashWithExactlyOnce: the same kill -9 with --exactly-once; a
// read_committed reader sees every answer exactly once and in order.
func TestCrashWithExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	t.Parallel() // waits more than it works: overlaps with the other waiting tests
	if dups := crashUnderLoad(t, []string{"--max-in-flight", "64", "--exactly-once"}, true).duplicates; dups != 0 {
		t.Errorf("%d duplicate answers in read_committed output, want 0", dups)
	}
}

// TestScalingUnderLoad: two workers, then three, then two again, while
// requests flow. Handing partitions over drains and commits first, so
// nothing is lost, order holds, and nothing is answered twice.
func TestScalingUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	t.Parallel() // waits more than it works: overlaps with the other waiting tests
	scalingUnderLoad(t, apptest.StackOptions{})
}

// scalingUnderLoad is TestScalingUnderLoad on a stack shaped by base.
func scalingUnderLoad(t *testing.T, base apptest.StackOptions) {
	base.Routers, base.ModelLatency, base.ModelJitter = 2, 20*time.Millisecond, 10*time.Millisecond
	base.RouterArgs = []string{"--max-in-flight", "64"}
	s := apptest.StartStack(t, bin, base)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	l := load{convs: 150, rounds: 16, pause: 100 * time.Millisecond}
	l.run(ctx, t, s, func(round int) {
		switch round {
		case 4:
			s.StartRouter()
		case 10:
			if err := s.Routers[0].Stop(30 * time.Second); err != nil {
				t.Errorf("stopping a router-worker: %v", err)
			}
		}
	})
	if dups := l.verdict(ctx, t, s, false); dups != 0 {
		t.Errorf("%d requests answered twice across graceful rebalances, want 0", dups)
	}
}
