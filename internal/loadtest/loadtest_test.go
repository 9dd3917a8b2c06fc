package loadtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testTopics = Topics{Interactive: "req", Batch: "req.batch", Results: "res", DeadLetter: "dlq"}

// fakeWorker answers every request with a chunk and a final result after
// delay, answering every dupEvery-th request twice and dropping every
// dropEvery-th.
func fakeWorker(ctx context.Context, t *testing.T, addrs []string, delay time.Duration, dupEvery, dropEvery int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("req", "req.batch"), kgo.ProducerLinger(0))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	n := 0
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			req, err := envelope.DecodeRequest(rec)
			if err != nil {
				t.Error(err)
				return
			}
			n++
			if dropEvery > 0 && n%dropEvery == 0 {
				return
			}
			base := pb.Result{RequestId: req.GetRequestId(), ConversationId: req.GetConversationId(), Attempt: 1, Metadata: req.GetMetadata()}
			chunk := &pb.Result{RequestId: base.RequestId, ConversationId: base.ConversationId, Attempt: 1, Metadata: base.Metadata,
				Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: 0, Delta: "o"}}}
			out, _ := envelope.EncodeResult("res", chunk)
			cl.Produce(ctx, out, nil)
			time.Sleep(delay)
			now := timestamppb.Now()
			final := &pb.Result{RequestId: base.RequestId, ConversationId: base.ConversationId, Attempt: 1, Metadata: base.Metadata,
				Body: &pb.Result_Final{Final: &pb.Final{Content: "ok", Timings: &pb.Timings{
					DispatchedAt: timestamppb.New(now.AsTime().Add(-delay)), CompletedAt: now}}}}
			copies := 1
			if dupEvery > 0 && n%dupEvery == 0 {
				copies = 2
			}
			for range copies { // a record may be produced once only
				out, _ = envelope.EncodeResult("res", final)
				cl.Produce(ctx, out, nil)
			}
		})
	}
}

func kafkaRun(t *testing.T, c *kfake.Cluster, cfg Config) *Report {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	drv, err := newKafkaDriver(opts, testTopics, "")
	if err != nil {
		t.Fatal(err)
	}
	defer drv.Close()
	cfg.Driver, cfg.Reader = drv, newKafkaReader(opts, testTopics)
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// workerCluster starts a cluster with the test topics and a fakeWorker
// (delay, dupEvery, dropEvery) answering on it; both stop at cleanup.
func workerCluster(t *testing.T, delay time.Duration, dupEvery, dropEvery int) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "req", "req.batch", "res", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); fakeWorker(ctx, t, c.ListenAddrs(), delay, dupEvery, dropEvery) }()
	t.Cleanup(func() { cancel(); <-done; c.Close() })
	return c
}

func TestRunAccountsForEveryRequest(t *testing.T) {
	c := workerCluster(t, time.Millisecond, 10, 25)

	rep := kafkaRun(t, c, Config{Scenario: "test", Loads: []Load{{Class: "interactive", Rate: 200, Conversations: 10}},
		Duration: time.Second, Drain: 3 * time.Second})
	ic := rep.Classes["interactive"]
	if ic == nil {
		t.Fatalf("no interactive class in %+v", rep.Classes)
	}
	if ic.Sent != 200 || ic.Accepted != 200 {
		t.Errorf("sent %d accepted %d, want 200 and 200", ic.Sent, ic.Accepted)
	}
	if ic.Lost != 200/25 {
		t.Errorf("lost %d, want %d (every 25th dropped)", ic.Lost, 200/25)
	}
	// Every 10th answered twice, except those also dropped (every 50th).
	if want := 200/10 - 200/50; ic.Duplicates != want {
		t.Errorf("duplicates %d, want %d", ic.Duplicates, want)
	}
	if ic.OrderViolations != 0 {
		t.Errorf("order violations %d, want 0: the fake worker answers in order", ic.OrderViolations)
	}
	if ic.LatencyMS.P50 <= 0 || ic.ModelMS.P50 <= 0 || ic.TTFCMS.Count == 0 || ic.Succeeded == 0 {
		t.Errorf("report %+v lacks latencies", ic)
	}
	if ic.ConversationsWithLoss == 0 || ic.ConversationsWithLoss > 10 {
		t.Errorf("conversations with loss %d, want 1..10", ic.ConversationsWithLoss)
	}
	failed := map[string]bool{}
	for _, ch := range rep.Checks {
		failed[ch.Name] = !ch.Pass
	}
	if !failed["interactive: nothing lost"] || !failed["interactive: no duplicates"] || failed["interactive: order kept"] {
		t.Errorf("checks %+v: want loss and duplicates to fail, order to pass", rep.Checks)
	}
	if len(rep.Series.Classes["interactive"].Sent) == 0 {
		t.Error("no time series")
	}
}

// TestOrderViolationCounted: an answer to an earlier message that arrives
// after a later one's is an order violation.
func TestOrderViolationCounted(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "req", "req.batch", "res", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	// A worker that answers requests in pairs, second first.
	go func() {
		defer close(done)
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("req"))
		if err != nil {
			t.Error(err)
			return
		}
		defer cl.Close()
		var held *pb.Request
		for {
			fetches := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fetches.EachRecord(func(rec *kgo.Record) {
				req, _ := envelope.DecodeRequest(rec)
				if held == nil {
					held = req
					return
				}
				for _, r := range []*pb.Request{req, held} {
					out, _ := envelope.EncodeResult("res", &pb.Result{RequestId: r.GetRequestId(), ConversationId: r.GetConversationId(),
						Metadata: r.GetMetadata(), Body: &pb.Result_Final{Final: &pb.Final{Content: "ok"}}})
					cl.Produce(ctx, out, nil)
				}
				held = nil
			})
		}
	}()
	defer func() { cancel(); <-done }()
	rep := kafkaRun(t, c, Config{Scenario: "test", Loads: []Load{{Rate: 100, Conversations: 1}}, Duration: 400 * time.Millisecond, Drain: 3 * time.Second})
	ic := rep.Classes["interactive"]
	if ic.OrderViolations != ic.Sent/2 || ic.Lost != 0 {
		t.Errorf("order violations %d lost %d, want %d and 0", ic.OrderViolations, ic.Lost, ic.Sent/2)
	}
}

// TestClosedLoopWaitsForAnswers: a closed-loop user never has two
// requests out at once, and sends again after each answer.
func TestClosedLoopWaitsForAnswers(t *testing.T) {
	c := workerCluster(t, 50*time.Millisecond, 0, 0)
	rep := kafkaRun(t, c, Config{Scenario: "test", Loads: []Load{
		{Class: "batch", Lane: "batch", Users: 4, Ramp: 100 * time.Millisecond},
	}, Duration: time.Second, Drain: 3 * time.Second})
	bc := rep.Classes["batch"]
	// Each user waits about 50ms per answer: at most 1s/50ms = 20 each,
	// and at least a few.
	if bc.Sent > 4*21 || bc.Sent < 4*3 {
		t.Errorf("sent %d, want between 12 and 84 for 4 users waiting ~50ms per answer", bc.Sent)
	}
	if bc.Lost != 0 || bc.Succeeded != bc.Measured || bc.Mode != "closed" || bc.Users != 4 || bc.Lane != "batch" {
		t.Errorf("batch class %+v: want nothing lost, all succeeded, closed loop of 4 on the batch lane", bc)
	}
	if bc.LatencyMS.P50 < 50 {
		t.Errorf("p50 %.1fms below the worker's 50ms", bc.LatencyMS.P50)
	}
}

// TestMalformedKafkaRecordsDeadLettered sends the Kafka kinds of bad input
// to a worker that dead-letters what it cannot decode, as router-worker
// does, and checks the outcomes are found.
func TestMalformedKafkaRecordsDeadLettered(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "req", "req.batch", "res", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("req"), kgo.ProducerLinger(0))
		if err != nil {
			t.Error(err)
			return
		}
		defer cl.Close()
		for {
			fetches := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fetches.EachRecord(func(rec *kgo.Record) {
				req, err := envelope.DecodeRequest(rec)
				var out *kgo.Record
				switch {
				case err != nil:
					out, _ = envelope.DeadLetter("dlq", rec, "decode_error", err.Error(), "", 1)
				case req.GetModel() != "sim":
					out, _ = envelope.EncodeResult("res", &pb.Result{RequestId: req.GetRequestId(), ConversationId: req.GetConversationId(),
						Metadata: req.GetMetadata(), Body: &pb.Result_Error{Error: &pb.Error{Code: "unknown_model"}}})
				default:
					out, _ = envelope.EncodeResult("res", &pb.Result{RequestId: req.GetRequestId(), ConversationId: req.GetConversationId(),
						Metadata: req.GetMetadata(), Body: &pb.Result_Final{Final: &pb.Final{Content: "ok"}}})
				}
				cl.Produce(ctx, out, nil)
			})
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	rep := kafkaRun(t, c, Config{Scenario: "malformed", Loads: []Load{{Rate: 120, Conversations: 5, BadShare: 0.5}},
		Duration: time.Second, Drain: 3 * time.Second, KafkaOpts: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, Topics: testTopics})
	m := rep.Malformed
	if m == nil || m.Sent < 20 {
		t.Fatalf("malformed report %+v: want at least 20 bad inputs", m)
	}
	if m.Unhandled != 0 {
		t.Errorf("unhandled %d of %d: %v", m.Unhandled, m.Sent, m.ByKind)
	}
	for _, k := range KafkaBadKinds {
		if len(m.ByKind["kafka/"+k]) == 0 {
			t.Errorf("no %s input sent: %v", k, m.ByKind)
		}
	}
	if got := m.ByKind["kafka/"+BadGarbage]; got[OutcomeDeadLettered+":decode_error"] == 0 {
		t.Errorf("garbage outcomes %v, want dead_lettered:decode_error", got)
	}
	if got := m.ByKind["kafka/"+BadUnknownModel]; got[OutcomeErrorResult+":unknown_model"] == 0 {
		t.Errorf("unknown model outcomes %v, want error_result:unknown_model", got)
	}
	if ic := rep.Classes["interactive"]; ic.Lost != 0 || ic.Succeeded == 0 {
		t.Errorf("good requests %+v: want none lost", ic)
	}
}
