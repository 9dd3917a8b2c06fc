package envelope

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Record encoding and decoding, as every request and result pays it:
//
//	go test -run '^$' -bench . -benchmem ./internal/envelope/

// benchRequest is a request of the load test's shape: one user message of
// about 100 bytes, a deadline, metadata.
func benchRequest() *pb.Request {
	return &pb.Request{
		RequestId: "0b5c8e1e-6d3f-4a51-9b2d-5f1c2e7a9d10", ConversationId: "conversation-123", Tenant: "dev",
		Lane: LaneInteractive, Model: "sim", Stream: true, MaxTokens: 64,
		Messages:   []*pb.Message{{Role: "user", Content: strings.Repeat("a benchmark message ", 5)}},
		Metadata:   map[string]string{"loadtest_id": "lt-42"},
		AcceptedAt: timestamppb.New(time.Unix(1796400000, 0)), Deadline: timestamppb.New(time.Unix(1796400060, 0)),
	}
}

// benchFinal is a final result with usage and timings.
func benchFinal() *pb.Result {
	t := timestamppb.New(time.Unix(1796400000, 0))
	return &pb.Result{RequestId: "0b5c8e1e-6d3f-4a51-9b2d-5f1c2e7a9d10", ConversationId: "conversation-123", Attempt: 1,
		Metadata: map[string]string{"loadtest_id": "lt-42"},
		Body: &pb.Result_Final{Final: &pb.Final{Content: strings.Repeat("an answer ", 20), FinishReason: "stop", Backend: "modelsim",
			Usage:   &pb.Usage{PromptTokens: 25, CompletionTokens: 50, TotalTokens: 75},
			Timings: &pb.Timings{AcceptedAt: t, DispatchedAt: t, FirstTokenAt: t, CompletedAt: t}}}}
}

func BenchmarkEncodeRequest(b *testing.B) {
	req := benchRequest()
	b.ReportAllocs()
	for range b.N {
		if _, err := EncodeRequest("switchboard.requests.interactive", req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	rec, err := EncodeRequest("switchboard.requests.interactive", benchRequest())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := DecodeRequest(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeRequestJSON: a direct producer's JSON request (protojson),
// the same request as BenchmarkDecodeRequest.
func BenchmarkDecodeRequestJSON(b *testing.B) {
	v, err := JSON.Marshal(benchRequest())
	if err != nil {
		b.Fatal(err)
	}
	rec := &kgo.Record{Topic: "switchboard.requests.interactive", Key: []byte("conversation-123"), Value: v,
		Headers: []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeJSON)}}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := DecodeRequest(rec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeResult(b *testing.B) {
	res := benchFinal()
	b.ReportAllocs()
	for range b.N {
		if _, err := EncodeResult("switchboard.results", res); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeResult(b *testing.B) {
	rec, err := EncodeResult("switchboard.results", benchFinal())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := DecodeResult(rec); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResultJSON: a final result as JSON (protojson), the form egress
// sends to clients (SSE, WebSocket) and webhooks.
func BenchmarkResultJSON(b *testing.B) {
	res := benchFinal()
	b.ReportAllocs()
	for range b.N {
		if _, err := JSON.Marshal(res); err != nil {
			b.Fatal(err)
		}
	}
}
