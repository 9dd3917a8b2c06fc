package envelope

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func validRequest() *pb.Request {
	return &pb.Request{
		RequestId:      "r1",
		ConversationId: "c1",
		Tenant:         "t",
		Lane:           LaneInteractive,
		Model:          "sim",
		Messages:       []*pb.Message{{Role: "user", Content: "hello"}},
		Metadata:       map[string]string{"k": "v"},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	want := validRequest()
	rec, err := EncodeRequest("topic", want)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(rec.Key); got != "c1" {
		t.Errorf("key = %q, want c1", got)
	}
	if got := Header(rec, HeaderContentType); got != ContentTypeProtobuf {
		t.Errorf("content-type = %q, want %q", got, ContentTypeProtobuf)
	}
	got, err := DecodeRequest(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestDecodeRequestJSONFromDirectProducer(t *testing.T) {
	rec := &kgo.Record{
		Topic:     "switchboard.requests.batch",
		Partition: 3,
		Offset:    42,
		Timestamp: time.Unix(1700000000, 0),
		Key:       []byte("conv-9"),
		Value:     []byte(`{"model":"sim","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`),
		Headers:   []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeJSON)}},
	}
	got, err := DecodeRequest(rec)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetConversationId() != "conv-9" {
		t.Errorf("conversation_id = %q, want conv-9 (from the key)", got.GetConversationId())
	}
	if want := "switchboard.requests.batch-3-42"; got.GetRequestId() != want {
		t.Errorf("request_id = %q, want %q (from the position)", got.GetRequestId(), want)
	}
	if got.GetAcceptedAt().AsTime().Unix() != 1700000000 {
		t.Errorf("accepted_at = %v, want the record timestamp", got.GetAcceptedAt().AsTime())
	}
	if got.GetLane() != LaneBatch {
		t.Errorf("lane = %q, want batch (from the topic)", got.GetLane())
	}
	if got.GetMaxTokens() != 5 {
		t.Errorf("max_tokens = %d, want 5", got.GetMaxTokens())
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	good, _ := EncodeRequest("t", validRequest())
	tests := []struct {
		name string
		rec  *kgo.Record
		want string
	}{
		{"garbage protobuf", &kgo.Record{Key: []byte("c1"), Value: []byte{0xff, 0xff, 0xff}}, "protobuf"},
		{"bad json", &kgo.Record{Key: []byte("c1"), Value: []byte(`{`), Headers: []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeJSON)}}}, "json"},
		{"unknown content type", &kgo.Record{Key: []byte("c1"), Value: good.Value, Headers: []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte("text/plain")}}}, "content-type"},
		{"future schema", &kgo.Record{Key: []byte("c1"), Value: good.Value, Headers: []kgo.RecordHeader{{Key: HeaderSchemaVersion, Value: []byte("9")}}}, "schema-version"},
		{"no key", &kgo.Record{Value: good.Value}, "no key"},
		{"key differs", &kgo.Record{Key: []byte("other"), Value: good.Value}, "differs"},
		{"invalid lane", &kgo.Record{Key: []byte("c1"), Value: []byte(`{"lane":"x","model":"sim","messages":[{"role":"user","content":"hi"}]}`), Headers: []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeJSON)}}}, "lane"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeRequest(tt.rec)
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("err = %v, want ErrDecode", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	temp := float32(3)
	tests := []struct {
		name  string
		edit  func(*pb.Request)
		field string
	}{
		{"ok", func(*pb.Request) {}, ""},
		{"no request id", func(r *pb.Request) { r.RequestId = "" }, "request_id"},
		{"bad conversation", func(r *pb.Request) { r.ConversationId = "a b" }, "conversation_id"},
		{"long conversation", func(r *pb.Request) { r.ConversationId = strings.Repeat("a", 129) }, "conversation_id"},
		{"dot conversation", func(r *pb.Request) { r.ConversationId = "." }, "conversation_id"},
		{"dot-dot conversation", func(r *pb.Request) { r.ConversationId = ".." }, "conversation_id"},
		{"dots in a conversation", func(r *pb.Request) { r.ConversationId = "a..b" }, ""},
		{"no model", func(r *pb.Request) { r.Model = "" }, "model"},
		{"no messages", func(r *pb.Request) { r.Messages = nil }, "messages"},
		{"bad role", func(r *pb.Request) { r.Messages[0].Role = "robot" }, "messages[0].role"},
		{"bad utf8", func(r *pb.Request) { r.Messages[0].Content = "\xff" }, "messages[0].content"},
		{"negative max tokens", func(r *pb.Request) { r.MaxTokens = -1 }, "max_tokens"},
		{"hot temperature", func(r *pb.Request) { r.Temperature = &temp }, "temperature"},
		{"empty metadata key", func(r *pb.Request) { r.Metadata = map[string]string{"": "v"} }, "metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.edit(r)
			err := Validate(r)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate = %v, want a FieldError on %q", err, tt.field)
			}
		})
	}
}

func TestResultRoundTripAndDeadLetter(t *testing.T) {
	res := &pb.Result{RequestId: "r1", ConversationId: "c1", Attempt: 1, Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: 2, Delta: "x"}}}
	rec, err := EncodeResult("results", res)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeResult(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, res) {
		t.Errorf("got %v, want %v", got, res)
	}
	if _, err := DecodeResult(&kgo.Record{Value: nil}); !errors.Is(err, ErrDecode) {
		t.Errorf("empty result: err = %v, want ErrDecode", err)
	}

	src := &kgo.Record{Topic: "in", Partition: 1, Offset: 7, Key: []byte("c1"), Value: []byte("junk"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
	dlRec, err := DeadLetter("dl", src, "decode_error", "bad bytes", "", 1)
	if err != nil {
		t.Fatal(err)
	}
	var dl pb.DeadLetter
	if err := proto.Unmarshal(dlRec.Value, &dl); err != nil {
		t.Fatal(err)
	}
	if dl.GetSourceTopic() != "in" || dl.GetSourceOffset() != 7 || string(dl.GetValue()) != "junk" || dl.GetReason() != "decode_error" || len(dl.GetHeaders()) != 1 {
		t.Errorf("dead letter = %v, want the source record and its reason", &dl)
	}
	if string(dlRec.Key) != "c1" {
		t.Errorf("dead letter key = %q, want the source key", dlRec.Key)
	}
}
