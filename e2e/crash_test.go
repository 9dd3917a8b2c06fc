package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// load produces rounds of requests straight to the interactive topic: in
// round n every conversation gets its message n. Between rounds it calls
// between(n) (which may kill or start processes) and sleeps pause.
type load struct {
	convs, rounds int
	pause         time.Duration
}

func (l load) run(ctx context.Context, t *testing.T, brokers string, between func(round int)) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for n := range l.rounds {
		recs := make([]*kgo.Record, 0, l.convs)
		for c := range l.convs {
			conv := fmt.Sprintf("load-%03d", c)
			rec, err := envelope.EncodeRequest("switchboard.requests.interactive", &pb.Request{
				RequestId: fmt.Sprintf("%s/%02d", conv, n), ConversationId: conv, Lane: envelope.LaneInteractive,
				Model: "sim", MaxTokens: 8, Messages: []*pb.Message{{Role: "user", Content: fmt.Sprintf("%s %d", conv, n)}},
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
func (l load) verdict(ctx context.Context, t *testing.T, brokers string, readCommitted bool) (duplicates int) {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumeTopics("switchboard.results"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	seen := map[string]int{} // request ID -> terminal results
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
				return
			}
			conv, round, _ := strings.Cut(id, "/")
			if got := fmt.Sprintf("%02d", next[conv]); round != got {
				t.Errorf("conversation %s: answer to message %s came when %s was due", conv, round, got)
			}
			next[conv]++
		})
	}
	return duplicates
}

// crashUnderLoad runs the standard load against two router-workers started
// with routerArgs, kills one with SIGKILL after round 5, starts a new one
// after round 10, and returns the duplicate answers a reader (with
// read_committed or not) saw; verdict has checked loss and order.
func crashUnderLoad(t *testing.T, routerArgs []string, readCommitted bool) (requests, duplicates int) {
	t.Helper()
	return crashUnderLoadOn(t, apptest.StackOptions{}, routerArgs, readCommitted)
}

// crashUnderLoadOn is crashUnderLoad on a stack shaped by base (its Kafka
// cluster and topics file; the rest is set here).
func crashUnderLoadOn(t *testing.T, base apptest.StackOptions, routerArgs []string, readCommitted bool) (requests, duplicates int) {
	t.Helper()
	base.Routers, base.ModelLatency, base.ModelJitter = 2, 20*time.Millisecond, 10*time.Millisecond
	base.RouterArgs = append([]string{"--session-timeout", "3s"}, routerArgs...)
	s := apptest.StartStack(t, bin, base)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	l := load{convs: 150, rounds: 16, pause: 100 * time.Millisecond}
	var killed sync.Once
	l.run(ctx, t, s.Brokers, func(round int) {
		switch round {
		case 5:
			killed.Do(s.Routers[0].Kill)
		case 10:
			s.StartRouter()
		}
	})
	return l.convs * l.rounds, l.verdict(ctx, t, s.Brokers, readCommitted)
}

// TestCrashedWorkerLosesNothing: two router-workers share the load; one is
// killed with SIGKILL mid-load and a new one starts later. Every request is
// answered, every conversation in order; duplicates are bounded by what
// was in flight or finished since the last commit at the kill.
func TestCrashedWorkerLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	const maxInFlight, commitInterval = 64, 200 * time.Millisecond
	n, dups := crashUnderLoad(t, []string{"--max-in-flight", fmt.Sprint(maxInFlight), "--commit-interval", commitInterval.String()}, false)
	// Work at risk at the kill: what the killed worker had in flight plus
	// what it finished in the last commit interval (at most the rate of
	// the whole load, 1,500 requests/s, for that long).
	bound := maxInFlight + int(1500*commitInterval.Seconds())
	t.Logf("%d requests, %d duplicate answers after the kill (bound %d)", n, dups, bound)
	if dups > bound {
		t.Errorf("%d duplicates, more than the %d at risk at the kill", dups, bound)
	}
}

// TestCrashWithExactlyOnce: the same kill -9 with --exactly-once; a
// read_committed reader sees every answer exactly once and in order.
func TestCrashWithExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	if _, dups := crashUnderLoad(t, []string{"--max-in-flight", "64", "--exactly-once"}, true); dups != 0 {
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
	l.run(ctx, t, s.Brokers, func(round int) {
		switch round {
		case 4:
			s.StartRouter()
		case 10:
			if err := s.Routers[0].Stop(30 * time.Second); err != nil {
				t.Errorf("stopping a router-worker: %v", err)
			}
		}
	})
	if dups := l.verdict(ctx, t, s.Brokers, false); dups != 0 {
		t.Errorf("%d requests answered twice across graceful rebalances, want 0", dups)
	}
}
