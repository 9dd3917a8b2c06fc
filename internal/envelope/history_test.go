package envelope

import (
	"bytes"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func testHistory() *pb.History {
	return &pb.History{ConversationId: "c-1", Tenant: "acme/eu", Lane: LaneInteractive, Turns: []*pb.Turn{{
		RequestId: "r1",
		Messages:  []*pb.Message{{Role: "user", Content: "hi"}, {Role: "assistant", Content: "hello"}},
	}}}
}

func TestHistoryRoundTrip(t *testing.T) {
	h := testHistory()
	rec, err := EncodeHistory("h", 3, h)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(rec.Key), "interactive/acme/eu/c-1"; got != want {
		t.Errorf("key: got %q, want %q", got, want)
	}
	if rec.Partition != 3 {
		t.Errorf("partition: got %d, want 3", rec.Partition)
	}
	got, err := DecodeHistory(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, h) {
		t.Errorf("got %v, want %v", got, h)
	}
	lane, tenant, conv, err := ParseHistoryKey(rec.Key)
	if err != nil || lane != LaneInteractive || tenant != "acme/eu" || conv != "c-1" {
		t.Errorf("ParseHistoryKey: got %q %q %q %v, want interactive acme/eu c-1", lane, tenant, conv, err)
	}
	tomb := HistoryTombstone("h", 3, LaneInteractive, "acme/eu", "c-1")
	if !bytes.Equal(tomb.Key, rec.Key) || tomb.Value != nil {
		t.Errorf("tombstone: got key %q value %v, want key %q and no value", tomb.Key, tomb.Value, rec.Key)
	}
	if h, err := DecodeHistory(tomb); h != nil || err != nil {
		t.Errorf("DecodeHistory(tombstone): got %v, %v; want nil, nil", h, err)
	}
}

func TestDecodeHistoryRefuses(t *testing.T) {
	good, _ := EncodeHistory("h", 0, testHistory())
	other := testHistory()
	other.Tenant = "other"
	otherValue, _ := proto.Marshal(other)
	badRole := testHistory()
	badRole.Turns[0].Messages[0].Role = "robot"
	badRoleValue, _ := proto.Marshal(badRole)
	for _, c := range []struct {
		name string
		rec  *kgo.Record
	}{
		{"no key", &kgo.Record{Value: good.Value}},
		{"key without tenant", &kgo.Record{Key: []byte("interactive/c-1"), Value: good.Value}},
		{"unknown lane", &kgo.Record{Key: []byte("fast/acme/eu/c-1"), Value: good.Value}},
		{"bad conversation ID", &kgo.Record{Key: []byte("interactive/acme/c 1"), Value: good.Value}},
		{"another tenant's value", &kgo.Record{Key: good.Key, Value: otherValue}},
		{"unknown role", &kgo.Record{Key: good.Key, Value: badRoleValue}},
		{"not protobuf", &kgo.Record{Key: good.Key, Value: []byte{0xff, 0xff}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := DecodeHistory(c.rec); !errors.Is(err, ErrDecode) {
				t.Errorf("got %v, want an ErrDecode", err)
			}
		})
	}
}

func TestForgetMemoryValidation(t *testing.T) {
	req := &pb.Request{RequestId: "r", ConversationId: "c", Lane: LaneBatch, ForgetMemory: true}
	if err := Validate(req); err != nil {
		t.Fatalf("a forget record: %v", err)
	}
	req.Model = "sim"
	if err := Validate(req); err == nil {
		t.Fatal("a forget record with a model passed")
	}
}

// FuzzDecodeHistory: arbitrary history keys and values decode or fail
// with ErrDecode, never panic; what decodes matches its key.
func FuzzDecodeHistory(f *testing.F) {
	good, _ := EncodeHistory("h", 0, testHistory())
	f.Add(good.Key, good.Value, false)
	f.Add([]byte("batch/t/c"), []byte(`{"conversation_id":"c","tenant":"t","lane":"batch","turns":[{"messages":[{"role":"user","content":"x"}]}]}`), true)
	f.Add([]byte("interactive//c"), []byte(nil), false)
	f.Fuzz(func(t *testing.T, key, value []byte, asJSON bool) {
		rec := &kgo.Record{Key: key, Value: value}
		if asJSON {
			rec.Headers = []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeJSON)}}
		}
		h, err := DecodeHistory(rec)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			return
		}
		if h != nil && !bytes.Equal(HistoryKey(h.GetLane(), h.GetTenant(), h.GetConversationId()), key) {
			t.Fatalf("decoded %v under key %q", h, key)
		}
	})
}
