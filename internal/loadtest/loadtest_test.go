package loadtest

import (
	"context"
	"log/slog"
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

// fakeWorker answers every request with a final result after delay,
// answering every dupEvery-th request twice and dropping every dropEvery-th.
func fakeWorker(ctx context.Context, t *testing.T, addrs []string, delay time.Duration, dupEvery, dropEvery int) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("req"), kgo.ProducerLinger(0))
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
			time.Sleep(delay)
			now := timestamppb.Now()
			res := &pb.Result{RequestId: req.GetRequestId(), ConversationId: req.GetConversationId(), Attempt: 1,
				Body: &pb.Result_Final{Final: &pb.Final{Content: "ok", Timings: &pb.Timings{
					DispatchedAt: timestamppb.New(now.AsTime().Add(-delay)), CompletedAt: now}}}}
			out, _ := envelope.EncodeResult("res", res)
			copies := 1
			if dupEvery > 0 && n%dupEvery == 0 {
				copies = 2
			}
			for range copies {
				dup := *out // kgo owns a record until it is produced: one per Produce
				cl.Produce(ctx, &dup, nil)
			}
		})
	}
}

func TestRunAccountsForEveryRequest(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "req", "res"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); fakeWorker(ctx, t, c.ListenAddrs(), time.Millisecond, 10, 25) }()
	defer func() { cancel(); <-done }()

	rep, err := Run(t.Context(), Config{
		ClientOpts:    []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)},
		RequestsTopic: "req", ResultsTopic: "res",
		Rate: 200, Duration: time.Second, Conversations: 10, Drain: 3 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 200 {
		t.Errorf("sent %d, want 200", rep.Sent)
	}
	if rep.Lost != 200/25 {
		t.Errorf("lost %d, want %d (every 25th dropped)", rep.Lost, 200/25)
	}
	// Every 10th answered twice, except those also dropped (every 50th).
	if want := 200/10 - 200/50; rep.Duplicates != want {
		t.Errorf("duplicates %d, want %d", rep.Duplicates, want)
	}
	// Lost and repeated answers are not order violations.
	if rep.OrderViolations != 0 {
		t.Errorf("order violations %d, want 0: the fake worker answers in order", rep.OrderViolations)
	}
	if rep.LatencyMS.P50 <= 0 || rep.ModelMS.P50 <= 0 || rep.Answered == 0 {
		t.Errorf("report %+v lacks latencies", rep)
	}
}

// TestOrderViolationCounted: an answer to an earlier message that arrives
// after a later one's is an order violation.
func TestOrderViolationCounted(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "req", "res"))
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
						Body: &pb.Result_Final{Final: &pb.Final{Content: "ok"}}})
					cl.Produce(ctx, out, nil)
				}
				held = nil
			})
		}
	}()
	defer func() { cancel(); <-done }()
	rep, err := Run(t.Context(), Config{
		ClientOpts:    []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)},
		RequestsTopic: "req", ResultsTopic: "res",
		Rate: 100, Duration: 400 * time.Millisecond, Conversations: 1, Drain: 3 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OrderViolations != rep.Sent/2 || rep.Lost != 0 {
		t.Errorf("order violations %d lost %d, want %d and 0", rep.OrderViolations, rep.Lost, rep.Sent/2)
	}
}
