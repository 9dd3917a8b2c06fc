package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/client"
)

// Send a streamed request straight to Kafka and read its answer from the
// results topic. The pipeline here (a kfake broker, modelsim and
// router-worker's service, in process: pipeline_test.go) stands in for a
// running deployment; against one, the seed brokers are its.
func Example() {
	p, err := startPipeline(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = p.stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	c, err := client.New(client.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(p.brokers...)}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	// The request ID follows from the tenant and idempotency key (as
	// ingress derives it), so sending again after an error is harmless.
	id := client.RequestIDForKey("dev", "order-42-summary")
	// Open the reader first: it starts at the end of the results, so it
	// sees every result of what is sent next.
	r, err := c.Results(ctx, "order-42", client.ReadOptions{RequestID: id})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()

	ack, err := c.Send(ctx, client.Request{
		ConversationID: "order-42",
		Tenant:         "dev",
		IdempotencyKey: "order-42-summary",
		Model:          "sim",
		Stream:         true,
		MaxTokens:      8,
		Messages:       []client.Message{{Role: "user", Content: "Summarise order 42"}},
		Metadata:       map[string]string{"order": "42"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("sent", ack.RequestID, "to", ack.Topic)

	var answer strings.Builder
	run, attempt := "", int32(0)
	for {
		res, err := r.Next(ctx)
		if errors.Is(err, client.ErrDecode) {
			log.Print(err) // not a result this build reads; the reader moved past it
			continue
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		switch {
		case res.Chunk != nil:
			if res.RunID != run || res.Attempt != attempt { // a retry or a rerun restarts the answer
				run, attempt = res.RunID, res.Attempt
				answer.Reset()
			}
			answer.WriteString(res.Chunk.Delta)
		case res.Final != nil:
			fmt.Println("streamed:", answer.String())
			fmt.Println("final:", res.Final.Content == answer.String(), res.Final.FinishReason, res.Metadata["order"])
			return
		case res.Error != nil:
			fmt.Println("error:", res.Error)
			return
		}
	}
	// Output:
	// sent 9e6a6861-f159-59df-a4c6-6871799afc38 to switchboard.requests.interactive
	// streamed: they in will answer you fox broker can
	// final: true length 42
}

// Derive the request ID ingress gives a request with an Idempotency-Key.
func ExampleRequestIDForKey() {
	fmt.Println(client.RequestIDForKey("dev", "order-42"))
	// Output: 33aaf74a-da0a-5a6d-9214-0918050f5b6e
}
