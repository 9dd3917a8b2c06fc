package envelope

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// DecodeDeadLetter decodes a record of the dead-letter topic (always
// protobuf, written by DeadLetter) and rebuilds the source record it holds
// as it was first read: topic, partition, offset, key, value and headers,
// byte for byte. Every error wraps ErrDecode.
func DecodeDeadLetter(rec *kgo.Record) (*pb.DeadLetter, *kgo.Record, error) {
	dl := new(pb.DeadLetter)
	if err := proto.Unmarshal(rec.Value, dl); err != nil {
		return nil, nil, fmt.Errorf("%w: dead letter: %v", ErrDecode, err)
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
