package envelope

import (
	"bytes"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestDeadLetterRoundTrip(t *testing.T) {
	req, err := EncodeRequest("switchboard.requests.batch", validRequest())
	if err != nil {
		t.Fatal(err)
	}
	req.Partition, req.Offset = 3, 41
	dlRec, err := DeadLetter("switchboard.deadletter", req, "backend_error", "boom", "r1", 3)
	if err != nil {
		t.Fatal(err)
	}
	dl, src, err := DecodeDeadLetter(dlRec)
	if err != nil {
		t.Fatal(err)
	}
	if dl.GetReason() != "backend_error" || dl.GetDetail() != "boom" || dl.GetAttempts() != 3 || dl.GetRequestId() != "r1" {
		t.Errorf("dead letter = %v", dl)
	}
	if src.Topic != req.Topic || src.Partition != 3 || src.Offset != 41 || !bytes.Equal(src.Key, req.Key) || !bytes.Equal(src.Value, req.Value) {
		t.Errorf("source = %s/%d/%d key %q, want %s/3/41 key %q", src.Topic, src.Partition, src.Offset, src.Key, req.Topic, req.Key)
	}
	if len(src.Headers) != len(req.Headers) {
		t.Fatalf("source headers = %v, want %v", src.Headers, req.Headers)
	}
	if _, err := DecodeRequest(src); err != nil {
		t.Errorf("rebuilt source does not decode as a request: %v", err)
	}
}

func TestDecodeDeadLetterRejects(t *testing.T) {
	for name, value := range map[string][]byte{
		"not protobuf":    {0xff, 0xff, 0xff},
		"no source topic": {0x3a, 0x01, 'x'}, // reason "x" only
	} {
		if _, _, err := DecodeDeadLetter(&kgo.Record{Value: value}); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: err = %v, want ErrDecode", name, err)
		}
	}
}

// FuzzDecodeDeadLetter: arbitrary dead-letter values decode or fail with
// ErrDecode, never panic.
func FuzzDecodeDeadLetter(f *testing.F) {
	req, _ := EncodeRequest("t", validRequest())
	good, _ := DeadLetter("dlq", req, "decode_error", "d", "", 0)
	f.Add(good.Value)
	f.Add([]byte{0x0a, 0x01, 't'})
	f.Fuzz(func(t *testing.T, value []byte) {
		dl, src, err := DecodeDeadLetter(&kgo.Record{Value: value})
		switch {
		case err != nil && !errors.Is(err, ErrDecode):
			t.Fatalf("error %v does not wrap ErrDecode", err)
		case err == nil && (dl == nil || src == nil || src.Topic == ""):
			t.Fatal("decoded a dead letter without its source")
		}
	})
}
