package envelope

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func TestParseEncoding(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Encoding
		wantErr bool
	}{
		{"", EncodingProtobuf, false},
		{"protobuf", EncodingProtobuf, false},
		{"json", EncodingJSON, false},
		{"JSON", 0, true},
		{"avro", 0, true},
	} {
		got, err := ParseEncoding(tc.in)
		if (err != nil) != tc.wantErr || (err == nil && got != tc.want) {
			t.Errorf("ParseEncoding(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && got.String() != map[bool]string{true: "json", false: "protobuf"}[tc.want == EncodingJSON] {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
}

// TestResultEncodingsRoundTrip: a result written in either encoding carries
// its content-type and reads back equal through DecodeResult, which goes by
// the header alone; the JSON one is plain protojson with the .proto names.
func TestResultEncodingsRoundTrip(t *testing.T) {
	want := &pb.Result{RequestId: "r1", ConversationId: "c1", Attempt: 1, RunId: "run",
		Metadata: map[string]string{"k": "v"},
		Body:     &pb.Result_Chunk{Chunk: &pb.Chunk{Index: 0, Delta: "hel"}}}
	for _, enc := range []Encoding{EncodingProtobuf, EncodingJSON} {
		rec, err := EncodeResultAs("results", want, enc)
		if err != nil {
			t.Fatal(err)
		}
		if got := Header(rec, HeaderContentType); got != enc.ContentType() {
			t.Errorf("%v: content-type = %q, want %q", enc, got, enc.ContentType())
		}
		if string(rec.Key) != "c1" || Header(rec, HeaderRequestID) != "r1" || Header(rec, HeaderSchemaVersion) != SchemaVersion {
			t.Errorf("%v: key %q, headers %v", enc, rec.Key, rec.Headers)
		}
		got, err := DecodeResult(rec)
		if err != nil {
			t.Fatalf("%v: %v", enc, err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("%v: got %v, want %v", enc, got, want)
		}
		if enc == EncodingJSON {
			var m map[string]any
			if err := json.Unmarshal(rec.Value, &m); err != nil {
				t.Fatalf("json value %s: %v", rec.Value, err)
			}
			chunk, _ := m["chunk"].(map[string]any)
			if m["request_id"] != "r1" || chunk == nil || chunk["index"] != 0.0 || chunk["delta"] != "hel" {
				t.Errorf("json value = %s, want snake_case names and index 0 written out", rec.Value)
			}
		}
	}
}

func TestRequestJSONRoundTrip(t *testing.T) {
	want := validRequest()
	rec, err := EncodeRequestAs("switchboard.requests.interactive", want, EncodingJSON)
	if err != nil {
		t.Fatal(err)
	}
	if got := Header(rec, HeaderContentType); got != ContentTypeJSON {
		t.Errorf("content-type = %q, want %q", got, ContentTypeJSON)
	}
	got, err := DecodeRequest(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestRequestIDForKey pins the derivation: ingress instances of every
// version and direct producers must agree on it.
func TestRequestIDForKey(t *testing.T) {
	if got, want := RequestIDForKey("dev", "order-42"), "33aaf74a-da0a-5a6d-9214-0918050f5b6e"; got != want {
		t.Errorf("RequestIDForKey(dev, order-42) = %s, want %s", got, want)
	}
	if RequestIDForKey("dev", "a") == RequestIDForKey("other", "a") {
		t.Error("two tenants' equal keys give one request ID")
	}
}

func TestValidIdempotencyKey(t *testing.T) {
	for k, want := range map[string]bool{"": true, "order-42": true, "a/b:c~!": true, strings.Repeat("k", 255): true,
		strings.Repeat("k", 256): false, "a b": false, "tab\t": false, "é": false, "\x7f": false} {
		if got := ValidIdempotencyKey(k); got != want {
			t.Errorf("ValidIdempotencyKey(%q) = %v, want %v", k, got, want)
		}
	}
}
