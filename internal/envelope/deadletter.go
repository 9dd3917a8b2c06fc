package envelope

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Reasons of dead letters (switchboard.v1.DeadLetter.reason), defined here
// once for every writer (router-worker, egress's webhook delivery) and
// reader (redrive, alerts, dashboards).
const (
	// ReasonDecode: the source record could not be decoded.
	ReasonDecode = "decode_error"
	// ReasonUnknownModel: no backend serves the request's model.
	ReasonUnknownModel = "unknown_model"
	// ReasonBackend: the backend failed with a non-retryable error, or
	// every attempt failed.
	ReasonBackend = "backend_error"
	// ReasonTooLarge: the result is larger than its topic accepts.
	ReasonTooLarge = "result_too_large"
	// ReasonWebhookNotAllowed: the webhook target is not on the allowlist.
	ReasonWebhookNotAllowed = "webhook_not_allowed"
	// ReasonWebhookRejected: the webhook receiver answered 4xx (not 408
	// or 429).
	ReasonWebhookRejected = "webhook_rejected"
	// ReasonWebhookFailed: every webhook attempt failed.
	ReasonWebhookFailed = "webhook_failed"
)

// DecodeDeadLetter decodes a record of the dead-letter topic (always
// protobuf, written by DeadLetter) and rebuilds the source record it holds
// as it was first read: topic, partition, offset, key, value and headers,
// byte for byte. Every error wraps ErrDecode.
func DecodeDeadLetter(rec *kgo.Record) (*pb.DeadLetter, *kgo.Record, error) {
	dl := new(pb.DeadLetter)
	if err := proto.Unmarshal(rec.Value, dl); err != nil {
		return nil, nil, fmt.Errorf("%w: dead letter: %w", ErrDecode, err)
	}
	if dl.GetSourceTopic() == "" {
		return nil, nil, fmt.Errorf("%w: dead letter without a source topic", ErrDecode)
	}
	src := &kgo.Record{
		Topic:     dl.GetSourceTopic(),
		Partition: dl.GetSourcePartition(),
		Offset:    dl.GetSourceOffset(),
		Key:       dl.GetKey(),
		Value:     dl.GetValue(),
	}
	for _, h := range dl.GetHeaders() {
		src.Headers = append(src.Headers, kgo.RecordHeader{Key: h.GetKey(), Value: h.GetValue()})
	}
	return dl, src, nil
}
