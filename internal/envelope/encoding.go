package envelope

import (
	"fmt"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Encoding is how a record's value is written: protobuf (the default) or
// protojson (JSON's options). Readers tell them apart by the content-type
// header (see decode), so one topic can hold both and a reader is never
// told which to expect: a deployment that switches its results to JSON
// leaves the protobuf records before the switch readable.
type Encoding int

// Encodings of record values.
const (
	EncodingProtobuf Encoding = iota // content-type application/x-protobuf
	EncodingJSON                     // content-type application/json (protojson, .proto field names)
)

// ParseEncoding reads an encoding's name: "protobuf" (or "") or "json".
func ParseEncoding(s string) (Encoding, error) {
	switch s {
	case "", "protobuf":
		return EncodingProtobuf, nil
	case "json":
		return EncodingJSON, nil
	}
	return 0, fmt.Errorf("encoding %q: want protobuf or json", s)
}

// String returns the encoding's name, as ParseEncoding reads it.
func (e Encoding) String() string {
	if e == EncodingJSON {
		return "json"
	}
	return "protobuf"
}

// ContentType is the content-type header value of records in e.
func (e Encoding) ContentType() string {
	if e == EncodingJSON {
		return ContentTypeJSON
	}
	return ContentTypeProtobuf
}

func (e Encoding) marshal(m proto.Message) ([]byte, error) {
	if e == EncodingJSON {
		return JSON.Marshal(m)
	}
	return proto.Marshal(m)
}

// EncodeRequestAs returns the record for req on topic, keyed by its
// conversation ID, with its value in enc.
func EncodeRequestAs(topic string, req *pb.Request, enc Encoding) (*kgo.Record, error) {
	v, err := enc.marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	return &kgo.Record{
		Topic:   topic,
		Key:     []byte(req.GetConversationId()),
		Value:   v,
		Headers: headers(enc, req.GetRequestId()),
	}, nil
}

// EncodeResultAs returns the record for res on topic, keyed by its
// conversation ID, with its value in enc.
func EncodeResultAs(topic string, res *pb.Result, enc Encoding) (*kgo.Record, error) {
	v, err := enc.marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return &kgo.Record{
		Topic:   topic,
		Key:     []byte(res.GetConversationId()),
		Value:   v,
		Headers: headers(enc, res.GetRequestId()),
	}, nil
}

// idempotencyNamespace is the UUIDv5 namespace of request IDs derived from
// idempotency keys. It must never change: ingress instances, restarts and
// direct producers derive the same ID from the same tenant and key.
var idempotencyNamespace = uuid.MustParse("5b0b5a3e-7c1f-4b61-9d4e-2a8c3f0e9d17")

// RequestIDForKey returns the request ID of a request sent by tenant with
// an idempotency key (ingress's Idempotency-Key): a UUIDv5 of the tenant
// and key. Every ingress instance and every direct producer (the client
// package) derives the same ID, so a repeat carries the same request_id
// and readers drop it as a duplicate.
func RequestIDForKey(tenantName, key string) string {
	return uuid.NewSHA1(idempotencyNamespace, []byte(tenantName+"\x00"+key)).String()
}

// MaxIdempotencyKeyLen bounds an idempotency key.
const MaxIdempotencyKeyLen = 255

// ValidIdempotencyKey reports whether k can be an idempotency key (ingress's
// Idempotency-Key, the client package's IdempotencyKey): at most 255
// printable ASCII characters without spaces; "" is valid (no key).
func ValidIdempotencyKey(k string) bool {
	if len(k) > MaxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}
