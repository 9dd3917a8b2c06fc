// Package envelope turns Switchboard's records into Kafka records and back.
//
// It is the one place that knows the wire contract (docs/RECORDS.md): every
// record carrying conversation data is keyed by conversation ID; its value is
// a switchboard.v1 message encoded as protobuf (the default) or protojson,
// named by the content-type header; a schema-version header names the
// contract's version. Ingress and direct producers write requests,
// router-worker reads them and writes results and dead letters, egress reads
// results.
package envelope

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Header keys and values of the record contract.
const (
	HeaderContentType   = "content-type"
	HeaderSchemaVersion = "schema-version"
	HeaderRequestID     = "request-id"

	ContentTypeProtobuf = "application/x-protobuf"
	ContentTypeJSON     = "application/json"

	// SchemaVersion is the version of the record contract this code writes
	// and the highest it reads.
	SchemaVersion = "1"
)

// ErrDecode wraps every failure to decode a record, so callers can tell a
// poison record (dead-letter it) from other errors.
var ErrDecode = errors.New("decode record")

// JSON is the protojson form used wherever Switchboard writes JSON: field
// names as in the .proto files (snake_case), matching the HTTP API, and
// zero values written out (a first chunk has "index": 0).
var JSON = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}

var jsonIn = protojson.UnmarshalOptions{}

// Header returns the value of the first header named key, or "".
func Header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func headers(enc Encoding, requestID string) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: HeaderContentType, Value: []byte(enc.ContentType())},
		{Key: HeaderSchemaVersion, Value: []byte(SchemaVersion)},
		{Key: HeaderRequestID, Value: []byte(requestID)},
	}
}

// EncodeRequest returns the record for req on topic, keyed by its
// conversation ID, with a protobuf value (as ingress writes requests).
func EncodeRequest(topic string, req *pb.Request) (*kgo.Record, error) {
	return EncodeRequestAs(topic, req, EncodingProtobuf)
}

// EncodeResult returns the record for res on topic, keyed by its
// conversation ID, with a protobuf value.
func EncodeResult(topic string, res *pb.Result) (*kgo.Record, error) {
	return EncodeResultAs(topic, res, EncodingProtobuf)
}

// decode unmarshals rec's value into m according to its content-type header.
func decode(rec *kgo.Record, m proto.Message) error {
	if v := Header(rec, HeaderSchemaVersion); v != "" && v != SchemaVersion {
		return fmt.Errorf("%w: unsupported schema-version %q (this build reads %s)", ErrDecode, v, SchemaVersion)
	}
	switch ct := Header(rec, HeaderContentType); ct {
	case "", ContentTypeProtobuf, "application/protobuf", "application/vnd.google.protobuf":
		if err := proto.Unmarshal(rec.Value, m); err != nil {
			return fmt.Errorf("%w: protobuf: %w", ErrDecode, err)
		}
	case ContentTypeJSON, "application/json; charset=utf-8":
		if err := jsonIn.Unmarshal(rec.Value, m); err != nil {
			return fmt.Errorf("%w: json: %w", ErrDecode, err)
		}
	default:
		return fmt.Errorf("%w: unsupported content-type %q", ErrDecode, ct)
	}
	return nil
}

// DecodeRequest decodes a request record written by ingress or by a direct
// producer, fills what a direct producer may leave out (see Normalize) and
// validates it. Every error wraps ErrDecode: the record cannot be processed.
func DecodeRequest(rec *kgo.Record) (*pb.Request, error) {
	req := new(pb.Request)
	if err := decode(rec, req); err != nil {
		return nil, err
	}
	if len(rec.Key) == 0 {
		return nil, fmt.Errorf("%w: record has no key; the key must be the conversation_id", ErrDecode)
	}
	Normalize(req, rec)
	if req.ConversationId != string(rec.Key) {
		return nil, fmt.Errorf("%w: conversation_id %q differs from the record key %q", ErrDecode, req.ConversationId, rec.Key)
	}
	if err := Validate(req); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return req, nil
}

// Normalize fills the fields a direct producer may omit, deterministically,
// so that processing a record twice gives the same result records:
// conversation_id from the key, request_id from the request-id header or the
// record's position, accepted_at from the record's timestamp, tenant
// "default", and lane from the topic's name.
func Normalize(req *pb.Request, rec *kgo.Record) {
	if req.ConversationId == "" {
		req.ConversationId = string(rec.Key)
	}
	if req.RequestId == "" {
		if id := Header(rec, HeaderRequestID); id != "" {
			req.RequestId = id
		} else {
			req.RequestId = fmt.Sprintf("%s-%d-%d", rec.Topic, rec.Partition, rec.Offset)
		}
	}
	if req.AcceptedAt == nil && !rec.Timestamp.IsZero() {
		req.AcceptedAt = timestamppb.New(rec.Timestamp)
	}
	if req.Tenant == "" {
		req.Tenant = "default"
	}
	if req.Lane == "" {
		switch {
		case strings.HasSuffix(rec.Topic, "."+LaneInteractive):
			req.Lane = LaneInteractive
		case strings.HasSuffix(rec.Topic, "."+LaneBatch):
			req.Lane = LaneBatch
		}
	}
}

// DecodeResult decodes a record from the results topic.
func DecodeResult(rec *kgo.Record) (*pb.Result, error) {
	res := new(pb.Result)
	if err := decode(rec, res); err != nil {
		return nil, err
	}
	if res.GetRequestId() == "" || res.GetBody() == nil {
		return nil, fmt.Errorf("%w: result without request_id or body", ErrDecode)
	}
	return res, nil
}

// DeadLetter wraps rec, byte for byte, with why it could not be processed,
// as a record for the dead-letter topic. The record keeps rec's key so a
// conversation's dead letters stay in order.
func DeadLetter(topic string, rec *kgo.Record, reason, detail, requestID string, attempts int32) (*kgo.Record, error) {
	dl := &pb.DeadLetter{
		SourceTopic:     rec.Topic,
		SourcePartition: rec.Partition,
		SourceOffset:    rec.Offset,
		Key:             rec.Key,
		Value:           rec.Value,
		Reason:          reason,
		Detail:          detail,
		RequestId:       requestID,
		FailedAt:        timestamppb.New(time.Now()),
		Attempts:        attempts,
	}
	for _, h := range rec.Headers {
		dl.Headers = append(dl.Headers, &pb.Header{Key: h.Key, Value: h.Value})
	}
	v, err := proto.Marshal(dl)
	if err != nil {
		return nil, fmt.Errorf("encode dead letter: %w", err)
	}
	return &kgo.Record{
		Topic: topic,
		Key:   rec.Key,
		Value: v,
		Headers: append(headers(EncodingProtobuf, requestID),
			kgo.RecordHeader{Key: "reason", Value: []byte(reason)}),
	}, nil
}

// Partition returns the partition a record keyed by key lands on in a topic
// of n partitions when produced with franz-go's default partitioner, which
// matches the Java client's (murmur2). Egress uses it to find the one
// partition that holds a conversation.
func Partition(key string, n int) int32 {
	tp := kgo.StickyKeyPartitioner(nil).ForTopic("")
	return int32(tp.Partition(&kgo.Record{Key: []byte(key)}, n))
}

// ResultIsChunk reports whether rec, a result record, holds a chunk, from
// the protobuf wire format alone, without decoding it: readers that want
// only terminal results skip the chunks, most of a streamed answer's
// records, at the cost of a scan. It is false for a JSON value or bytes it
// cannot read; decode those to tell.
func ResultIsChunk(rec *kgo.Record) bool {
	switch Header(rec, HeaderContentType) {
	case "", ContentTypeProtobuf, "application/protobuf", "application/vnd.google.protobuf":
	default:
		return false
	}
	body := protowire.Number(0)
	for b := rec.Value; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return false
		}
		if typ == protowire.BytesType && num >= resultChunkField && num <= resultErrorField {
			body = num // the oneof's last member on the wire is the one set
		}
		b = b[n+m:]
	}
	return body == resultChunkField
}

// The members of Result's body oneof (proto/switchboard/v1/records.proto).
const (
	resultChunkField protowire.Number = 5
	resultErrorField protowire.Number = 7
)
