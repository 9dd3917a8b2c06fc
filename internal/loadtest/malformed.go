package loadtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// Kinds of bad input the malformed scenario sends. Each comes with the
// outcome Switchboard owes it: a 4xx with a JSON error from ingress, or,
// for records written straight to Kafka, a dead letter; an unknown model is
// refused by ingress (400 unknown_model, once it has read the models the
// router-workers serve) and, written straight to Kafka, answered with an
// unknown_model error and dead-lettered.
const (
	BadJSON         = "invalid_json"   // truncated JSON (HTTP body; Kafka value with content-type application/json)
	BadType         = "wrong_type"     // a field of the wrong JSON type (HTTP)
	BadHuge         = "huge_body"      // a body over ingress's 1 MiB limit (HTTP)
	BadUTF8         = "bad_utf8"       // invalid UTF-8 inside a string (HTTP JSON; Kafka protobuf)
	BadContentType  = "content_type"   // Content-Type text/plain (HTTP)
	BadUnknownModel = "unknown_model"  // a well-formed request for a model no backend serves (both)
	BadGarbage      = "garbage"        // random bytes as a protobuf value (Kafka)
	BadNoKey        = "no_key"         // a record without the conversation key (Kafka)
	BadSchema       = "schema_version" // a schema-version header from the future (Kafka)
)

// HTTPBadKinds and KafkaBadKinds are the kinds each entry point can carry.
var (
	HTTPBadKinds  = []string{BadJSON, BadType, BadHuge, BadUTF8, BadContentType, BadUnknownModel}
	KafkaBadKinds = []string{BadGarbage, BadJSON, BadUTF8, BadNoKey, BadSchema, BadUnknownModel}
)

// Bad is one bad input.
type Bad struct {
	// ID is the loadtest ID (in metadata where the form allows, and in the
	// loadtest-id header of Kafka records).
	ID   string
	Kind string
	// Model is the model a well-formed part names.
	Model string
	// HugeBytes is the body size of BadHuge. Default 1 MiB + 1 KiB.
	HugeBytes int
}

// httpBody returns the body and content type of bad for ingress.
func (b Bad) httpBody() ([]byte, string) {
	valid := func(model, content string) []byte {
		v, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": roleUser, "content": content}},
			"metadata": map[string]string{MetadataKey: b.ID}})
		return v
	}
	switch b.Kind {
	case BadJSON:
		return []byte(`{"model":"` + b.Model + `","messages":[{"role":"user","content":"cut off`), "application/json"
	case BadType:
		return []byte(`{"model":42,"messages":"not a list"}`), "application/json"
	case BadHuge:
		n := b.HugeBytes
		if n == 0 {
			n = 1<<20 + 1<<10
		}
		return valid(b.Model, strings.Repeat("x", n)), "application/json"
	case BadUTF8:
		v := valid(b.Model, "PLACEHOLDER")
		return bytes.Replace(v, []byte("PLACEHOLDER"), []byte("bad \xff\xfe bytes"), 1), "application/json"
	case BadContentType:
		return valid(b.Model, "plain"), "text/plain"
	case BadUnknownModel:
		return valid("no-such-model-loadtest", "hello"), "application/json"
	}
	return nil, ""
}

// badRecord returns bad as a record for topic, or nil when the kind has no
// Kafka form.
func badRecord(topic, conv string, b Bad) *kgo.Record {
	rec := &kgo.Record{Topic: topic, Key: []byte(conv), Headers: []kgo.RecordHeader{{Key: headerLoadtestID, Value: []byte(b.ID)}}}
	jsonContent := func() {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: envelope.HeaderContentType, Value: []byte(envelope.ContentTypeJSON)})
	}
	switch b.Kind {
	case BadGarbage:
		rec.Value = make([]byte, 64)
		for i := range rec.Value {
			rec.Value[i] = byte(rand.Uint32())
		}
		// Make sure it is not accidentally valid: field 0 is illegal.
		rec.Value[0] = 0x00
	case BadJSON:
		jsonContent()
		rec.Value = []byte(`{"model":"` + b.Model + `","messages":[{"role":`)
	case BadUTF8:
		// Protobuf by hand: proto3 strings must be UTF-8, which Go's
		// marshaller would refuse to write.
		var msg []byte
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendString(msg, "user")
		msg = protowire.AppendTag(msg, 2, protowire.BytesType)
		msg = protowire.AppendBytes(msg, []byte("bad \xff\xfe bytes"))
		var v []byte
		v = protowire.AppendTag(v, 2, protowire.BytesType)
		v = protowire.AppendString(v, conv)
		v = protowire.AppendTag(v, 5, protowire.BytesType)
		v = protowire.AppendString(v, b.Model)
		v = protowire.AppendTag(v, 6, protowire.BytesType)
		v = protowire.AppendBytes(v, msg)
		rec.Value = v
	case BadNoKey:
		rec.Key = nil
		jsonContent()
		rec.Value = []byte(`{"model":"` + b.Model + `","messages":[{"role":"user","content":"no key"}]}`)
	case BadSchema:
		jsonContent()
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: envelope.HeaderSchemaVersion, Value: []byte("99")})
		rec.Value = []byte(`{"model":"` + b.Model + `","messages":[{"role":"user","content":"from the future"}]}`)
	case BadUnknownModel:
		jsonContent()
		v, _ := json.Marshal(map[string]any{"conversation_id": conv, "lane": envelope.LaneInteractive, "model": "no-such-model-loadtest",
			"messages": []map[string]string{{"role": roleUser, "content": "hello"}}, "metadata": map[string]string{MetadataKey: b.ID}})
		rec.Value = v
	default:
		return nil
	}
	return rec
}

// Outcomes of a bad input.
const (
	OutcomeRejected     = "rejected"      // the entry point refused it with a clear error
	OutcomeDeadLettered = "dead_lettered" // it reached the dead-letter topic with a reason
	OutcomeErrorResult  = "error_result"  // it was answered with an error result
	OutcomeAnswered     = "answered"      // it was accepted and answered as if valid
	OutcomeNone         = "no_outcome"    // accepted, and nothing came back within the drain
	OutcomeSendFailed   = "send_failed"   // the send itself failed (connection, timeout)
)

// badFor picks the bad kinds of a run round-robin.
type badPicker struct {
	kinds []string
	n     int
}

func (p *badPicker) next() string {
	k := p.kinds[p.n%len(p.kinds)]
	p.n++
	return k
}

func (b Bad) String() string { return fmt.Sprintf("%s(%s)", b.Kind, b.ID) }
