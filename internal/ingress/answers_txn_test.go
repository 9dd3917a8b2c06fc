package ingress

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestChatCompletionSkipsAbortedTransaction: router-worker --exactly-once
// wrote a terminal result in a transaction that aborted, then the redo's
// in one that committed: the OpenAI caller gets the committed answer.
func TestChatCompletionSkipsAbortedTransaction(t *testing.T) {
	s := startOpenAI(t, nil)
	brokers := s.cluster.ListenAddrs()
	rd, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("switchboard.requests.interactive"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	tx, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("txn-worker"))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		for ctx.Err() == nil {
			rd.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
				req, err := envelope.DecodeRequest(rec)
				if err != nil || req.GetModel() != "silent" {
					return
				}
				for _, how := range []kgo.TransactionEndTry{kgo.TryAbort, kgo.TryCommit} {
					content, run := "Hello, world", "run2"
					if how == kgo.TryAbort {
						content, run = "ABORTED", "run1"
					}
					r := &pb.Result{RequestId: req.GetRequestId(), ConversationId: req.GetConversationId(),
						Tenant: req.GetTenant(), Attempt: 1, RunId: run,
						Body: &pb.Result_Final{Final: &pb.Final{Content: content, FinishReason: "stop"}}}
					kr, _ := envelope.EncodeResult("switchboard.results", r)
					if tx.BeginTransaction() != nil || tx.ProduceSync(ctx, kr).FirstErr() != nil || tx.EndTransaction(ctx, how) != nil {
						return
					}
				}
			})
		}
	})
	res, body := chat(t, s.url, `{"model":"silent","messages":[{"role":"user","content":"hi"}]}`, nil)
	if res.StatusCode != 200 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	var c oaiCompletion
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Choices) != 1 || c.Choices[0].Message.Content != "Hello, world" {
		t.Errorf("completion %s, want the committed answer", body)
	}
}
