package envelope

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// FuzzDecodeRequest feeds arbitrary values in both encodings: decoding must
// return a request or an ErrDecode, never panic.
func FuzzDecodeRequest(f *testing.F) {
	good, _ := EncodeRequest("t", validRequest())
	f.Add(good.Value, false)
	f.Add([]byte(`{"lane":"batch","model":"sim","messages":[{"role":"user","content":"hi"}]}`), true)
	f.Add([]byte(`{"messages":[{"role":"user"}],"deadline":"x"}`), true)
	f.Fuzz(func(t *testing.T, value []byte, asJSON bool) {
		rec := &kgo.Record{Key: []byte("c1"), Value: value}
		if asJSON {
			rec.Headers = []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeJSON)}}
		}
		req, err := DecodeRequest(rec)
		if err == nil {
			if verr := Validate(req); verr != nil {
				t.Fatalf("decoded request fails validation: %v", verr)
			}
		}
	})
}

// FuzzDecodeResult: arbitrary result values decode or fail cleanly, and
// ResultIsChunk agrees with the decoded result on every protobuf value
// that decodes.
func FuzzDecodeResult(f *testing.F) {
	f.Add([]byte{0x0a, 0x02, 'r', '1'}, false)
	f.Add([]byte(`{"request_id":"r","chunk":{"index":1,"delta":"d"}}`), true)
	for _, res := range []*pb.Result{
		{RequestId: "r", Attempt: 1, Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: 2, Delta: "d"}}, Metadata: map[string]string{"k": "v"}},
		{RequestId: "r", Body: &pb.Result_Final{Final: &pb.Final{Content: "c"}}, Tenant: "t"},
		{RequestId: "r", Body: &pb.Result_Error{Error: &pb.Error{Code: "x"}}},
	} {
		b, err := proto.Marshal(res)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(append(b, 0x2a, 0x00), false) // an empty chunk after it: the chunk wins
	}
	f.Fuzz(func(t *testing.T, value []byte, asJSON bool) {
		rec := &kgo.Record{Key: []byte("c1"), Value: value}
		if asJSON {
			rec.Headers = []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeJSON)}}
		}
		res, err := DecodeResult(rec)
		if err == nil && res.GetRequestId() == "" {
			t.Fatal("decoded a result without request_id")
		}
		if err == nil && ResultIsChunk(rec) != (!asJSON && res.GetChunk() != nil) {
			t.Fatalf("ResultIsChunk %v for %x (json %v), decoded chunk %v", ResultIsChunk(rec), value, asJSON, res.GetChunk())
		}
	})
}
