package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/client"
	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// TestGoClientWithJSONResults runs the whole stack with router-worker's
// --results-encoding json: a request sent with the Go client package
// (JSON-encoded, idempotency key) is answered and read back with it; the
// result records are JSON with content-type application/json (what kcat
// shows); egress streams and the OpenAI-compatible API read them as they
// read protobuf; a repeat of the idempotency key is answered once.
func TestGoClientWithJSONResults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	s := apptest.StartStack(t, bin, apptest.StackOptions{RouterArgs: []string{"--results-encoding", "json"}})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	brokers := strings.Split(s.Brokers, ",")
	c, err := client.New(client.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Encoding: client.JSON})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Results(ctx, "client-e2e", client.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	req := client.Request{ConversationID: "client-e2e", Tenant: "dev", IdempotencyKey: "client-e2e-1", Model: "sim", Stream: true,
		MaxTokens: 16, Messages: []client.Message{{Role: "user", Content: "Hello from the Go client"}}, Metadata: map[string]string{"via": "client"}}
	ack, err := c.Send(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if ack.RequestID != client.RequestIDForKey("dev", "client-e2e-1") {
		t.Errorf("request ID %s, want the idempotency key's", ack.RequestID)
	}
	var text strings.Builder
	var final client.Result
	for final.Final == nil {
		res, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("read results: %v", err)
		}
		if res.RequestID != ack.RequestID || res.Error != nil {
			t.Fatalf("result %+v, want %s's answer", res, ack.RequestID)
		}
		if res.Chunk != nil {
			text.WriteString(res.Chunk.Delta)
		} else {
			final = res
		}
	}
	if final.Final.Content == "" || text.String() != final.Final.Content || final.Metadata["via"] != "client" {
		t.Errorf("streamed %q, final %+v", text.String(), final.Final)
	}

	// The result records are JSON, as kcat shows them.
	raw, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.Topic("results"): {final.Partition: kgo.NewOffset().At(final.Offset)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	recs := raw.PollFetches(ctx).Records()
	if len(recs) == 0 {
		t.Fatal("the final result record was not read back")
	}
	rec := recs[0]
	var v map[string]any
	if ct := headerOf(rec, "content-type"); ct != "application/json" || json.Unmarshal(rec.Value, &v) != nil || v["request_id"] != ack.RequestID || v["final"] == nil {
		t.Errorf("final record: content-type %q, value %s; want JSON with request_id and final", headerOf(rec, "content-type"), rec.Value)
	}

	// Sent again with the same key: the same request ID, answered once
	// (router-worker answers the repeat with a copy, which the reader drops).
	if again, err := c.Send(ctx, req); err != nil || again.RequestID != ack.RequestID {
		t.Fatalf("repeat: %+v, %v", again, err)
	}
	req2 := req
	req2.IdempotencyKey, req2.Stream = "client-e2e-2", false
	ack2, err := c.Send(ctx, req2)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.Next(ctx); err != nil || res.RequestID != ack2.RequestID || res.Final == nil {
		t.Errorf("after the repeat: %+v, %v; want %s's final answer alone", res, err, ack2.RequestID)
	}

	// Egress streams and the OpenAI-compatible API read JSON results.
	waitAnswer(ctx, t, s.EgressURL, "client-e2e", ack.RequestID)
	waitModels(ctx, t, s.IngressURL)
	oc := openAIClient(s.IngressURL, apptest.DevKey)
	comp, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "sim",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello, JSON results")}},
		option.WithHeader("X-Switchboard-Conversation-Id", "client-e2e-openai"))
	if err != nil || len(comp.Choices) != 1 || comp.Choices[0].Message.Content == "" {
		t.Errorf("OpenAI completion over JSON results: %+v, %v", comp, err)
	}
}

func headerOf(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
