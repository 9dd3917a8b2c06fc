package envelope

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// History records (the history topic, docs/RECORDS.md) hold one
// conversation's memory in one lane. Their key is
// "<lane>/<tenant>/<conversation_id>": the tenant is part of the key, so two
// tenants that use the same conversation ID have two histories, and a
// tenant's delete can only ever tombstone its own. Lanes and conversation
// IDs hold no "/", so the key splits unambiguously whatever the tenant's
// name. The partition is not the key's hash: a history record goes to the
// partition number of its conversation's requests partition (the topics
// have the same partition count), which is what co-partitions them.

// MaxHistoryKeyLen bounds a history record's key.
const MaxHistoryKeyLen = 1024

// HistoryKey returns the history record key of a conversation of tenant in
// lane.
func HistoryKey(lane, tenant, conversationID string) []byte {
	return []byte(lane + "/" + tenant + "/" + conversationID)
}

// ParseHistoryKey splits a history record key into its lane, tenant and
// conversation ID. Every error wraps ErrDecode.
func ParseHistoryKey(key []byte) (lane, tenant, conversationID string, err error) {
	if len(key) > MaxHistoryKeyLen {
		return "", "", "", fmt.Errorf("%w: history key of %d bytes, at most %d", ErrDecode, len(key), MaxHistoryKeyLen)
	}
	k := string(key)
	lane, rest, ok := strings.Cut(k, "/")
	i := strings.LastIndexByte(rest, '/')
	if !ok || i < 0 {
		return "", "", "", fmt.Errorf("%w: history key %q is not <lane>/<tenant>/<conversation_id>", ErrDecode, k)
	}
	tenant, conversationID = rest[:i], rest[i+1:]
	if lane != LaneInteractive && lane != LaneBatch {
		return "", "", "", fmt.Errorf("%w: history key %q: unknown lane %q", ErrDecode, k, lane)
	}
	if !ValidConversationID(conversationID) {
		return "", "", "", fmt.Errorf("%w: history key %q: invalid conversation ID", ErrDecode, k)
	}
	return lane, tenant, conversationID, nil
}

// EncodeHistory returns the history record of h on topic and partition,
// with a protobuf value.
func EncodeHistory(topic string, partition int32, h *pb.History) (*kgo.Record, error) {
	v, err := proto.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode history: %w", err)
	}
	return &kgo.Record{
		Topic:     topic,
		Partition: partition,
		Key:       HistoryKey(h.GetLane(), h.GetTenant(), h.GetConversationId()),
		Value:     v,
		Headers:   headers(EncodingProtobuf, ""),
	}, nil
}

// HistoryTombstone returns the record that forgets a conversation's
// history: its key and no value.
func HistoryTombstone(topic string, partition int32, lane, tenant, conversationID string) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: partition, Key: HistoryKey(lane, tenant, conversationID)}
}

// DecodeHistory decodes a history record. A tombstone (nil value) decodes
// to nil and no error. The value's conversation, tenant and lane must be
// its key's, and every message must have a request message's role and
// valid UTF-8 content. Every error wraps ErrDecode.
func DecodeHistory(rec *kgo.Record) (*pb.History, error) {
	lane, tenant, conv, err := ParseHistoryKey(rec.Key)
	if err != nil {
		return nil, err
	}
	if rec.Value == nil {
		return nil, nil
	}
	h := new(pb.History)
	if err := decode(rec, h); err != nil {
		return nil, err
	}
	if h.GetLane() != lane || h.GetTenant() != tenant || h.GetConversationId() != conv {
		return nil, fmt.Errorf("%w: history of %s/%s/%s under key %q", ErrDecode, h.GetLane(), h.GetTenant(), h.GetConversationId(), rec.Key)
	}
	for i, t := range h.GetTurns() {
		for j, m := range t.GetMessages() {
			if !validRole(m.GetRole()) || !utf8.ValidString(m.GetContent()) {
				return nil, fmt.Errorf("%w: turns[%d].messages[%d]: role %q or content not valid", ErrDecode, i, j, m.GetRole())
			}
		}
	}
	return h, nil
}

func validRole(role string) bool {
	switch role {
	case "system", "user", "assistant", "tool", "developer":
		return true
	}
	return false
}
