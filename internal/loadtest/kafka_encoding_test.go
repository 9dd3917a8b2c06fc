package loadtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestKafkaReaderReadsJSONResults: the results-topic reader decodes
// results written as JSON (router-worker's --results-encoding json) and as
// protobuf on one topic, by their content-type header.
func TestKafkaReaderReadsJSONResults(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "req", "req.batch", "res", "dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	r := newKafkaReader(opts, testTopics)
	var mu sync.Mutex
	var got []Answer
	if err := r.Open(t.Context(), func(a Answer) { mu.Lock(); got = append(got, a); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	meta := map[string]string{MetadataKey: "lt-1"}
	results := []struct {
		res *pb.Result
		enc envelope.Encoding
	}{
		{&pb.Result{RequestId: "r1", ConversationId: "c1", Attempt: 1, Metadata: meta,
			Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: 0, Delta: "o"}}}, envelope.EncodingJSON},
		{&pb.Result{RequestId: "r1", ConversationId: "c1", Attempt: 1, Metadata: meta,
			Body: &pb.Result_Final{Final: &pb.Final{Content: "ok"}}}, envelope.EncodingJSON},
		{&pb.Result{RequestId: "r2", ConversationId: "c1", Attempt: 2, Metadata: map[string]string{MetadataKey: "lt-2"},
			Body: &pb.Result_Error{Error: &pb.Error{Code: "backend_error"}}}, envelope.EncodingProtobuf},
	}
	for _, x := range results {
		rec, err := envelope.EncodeResultAs("res", x.res, x.enc)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	want := []Answer{{ID: "lt-1", RequestID: "r1", Conversation: "c1", Attempt: 1, Kind: Chunk},
		{ID: "lt-1", RequestID: "r1", Conversation: "c1", Attempt: 1, Kind: Final},
		{ID: "lt-2", RequestID: "r2", Conversation: "c1", Attempt: 2, Kind: Failed, ErrorCode: "backend_error"}}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("got %d answers %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g := got[i]
		g.At = time.Time{}
		if g != want[i] {
			t.Errorf("answer %d = %+v, want %+v", i, g, want[i])
		}
	}
}
