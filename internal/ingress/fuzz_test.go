package ingress

import (
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// checkSubmission builds a request from a decoded submission: it either
// fails with a status and code, or yields a request the record contract
// accepts and that survives encoding and decoding.
func checkSubmission(t *testing.T, in *Ingress, s submission) {
	req, f := in.buildRequest(&s, time.Unix(1, 0))
	if f != nil {
		if f.status < 400 || f.code == "" || f.message == "" {
			t.Fatalf("failure without status, code or message: %+v", f)
		}
		return
	}
	if err := envelope.Validate(req); err != nil {
		t.Fatalf("built request fails validation: %v", err)
	}
	rec, err := envelope.EncodeRequest("switchboard.requests."+req.GetLane(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envelope.DecodeRequest(rec); err != nil {
		t.Fatalf("built request does not decode: %v", err)
	}
}

func fuzzIngress() *Ingress {
	return &Ingress{cfg: Config{MaxBodyBytes: 1 << 20}}
}

var fuzzTenant = &tenant.Tenant{Name: "fuzz"}

// FuzzMessageBody decodes HTTP bodies (single and batch) as ingress does.
func FuzzMessageBody(f *testing.F) {
	f.Add([]byte(`{"model":"sim","messages":[{"role":"user","content":"hi"}],"lane":"batch","metadata":{"a":"b"},"temperature":1.5,"timeout_ms":10}`))
	f.Add([]byte(`{"requests":[{"conversation_id":"c","idempotency_key":"k","model":"sim","messages":[{"role":"user","content":"hi"}]}]}`))
	f.Add([]byte(`{"model":"sim","messages":[{"role":"user","content":"\xff"}]}`))
	f.Add([]byte(`{"model":5}`))
	f.Add([]byte(`{}{}`))
	in := fuzzIngress()
	f.Fuzz(func(t *testing.T, b []byte) {
		var body messageBody
		if fl := decodeJSON(b, &body); fl == nil {
			checkSubmission(t, in, submission{tenant: fuzzTenant, conversationID: "conv", body: body})
		} else if fl.status != 400 || fl.code != "invalid_json" {
			t.Fatalf("decode failure %+v, want 400 invalid_json", fl)
		}
		var batch batchBody
		if fl := decodeJSON(b, &batch); fl == nil {
			if checkBatch(len(batch.Requests), 100) != nil {
				return
			}
			for _, it := range batch.Requests {
				checkSubmission(t, in, submission{tenant: fuzzTenant, conversationID: it.ConversationID, idempotencyKey: it.IdempotencyKey, body: it.messageBody})
			}
		}
	})
}

// FuzzWebSocketFrame decodes WebSocket client frames.
func FuzzWebSocketFrame(f *testing.F) {
	f.Add([]byte(`{"type":"submit","id":"1","conversation_id":"c","model":"sim","messages":[{"role":"user","content":"hi"}]}`))
	f.Add([]byte(`{"type":"submit","id":"","conversation_id":"c"}`))
	f.Add([]byte(`{"type":"ping","id":"2"}`))
	f.Add([]byte(`{"id":"3","surprise":true}`))
	f.Add([]byte(`[]`))
	in := fuzzIngress()
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, fl := decodeFrame(b)
		if fl != nil {
			if fl.status != 400 || fl.message == "" {
				t.Fatalf("frame failure %+v, want a 400 with a message", fl)
			}
			return
		}
		if fr.Type != "submit" || fr.ID == "" {
			t.Fatalf("accepted frame %+v without type submit and an id", fr)
		}
		checkSubmission(t, in, submission{tenant: fuzzTenant, conversationID: fr.ConversationID, idempotencyKey: fr.IdempotencyKey, body: fr.messageBody})
	})
}

// FuzzChatRequest decodes OpenAI chat completions bodies: each either maps
// to a request the record contract accepts, or is refused with a 400 that
// OpenAI's error shape can carry.
func FuzzChatRequest(f *testing.F) {
	f.Add([]byte(`{"model":"sim","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`))
	f.Add([]byte(`{"model":"sim","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"max_completion_tokens":5,"temperature":2,"metadata":{"a":"b"}}`))
	f.Add([]byte(`{"model":"sim","messages":[{"role":"user","content":"hi","name":null}],"tools":null,"n":1,"max_tokens":3}`))
	f.Add([]byte(`{"model":"sim","messages":[{"role":"user","content":[{"type":"image_url"}]}],"top_p":1}`))
	f.Add([]byte(`{"model":"sim","model":"x"}`))
	f.Add([]byte(`null`))
	in := fuzzIngress()
	f.Fuzz(func(t *testing.T, b []byte) {
		cr, fl := decodeChatRequest(b)
		if fl != nil {
			switch {
			case fl.status != 400 || fl.message == "":
				t.Fatalf("failure %+v, want a 400 with a message", fl)
			case fl.code != "invalid_json" && fl.code != "invalid_request" && fl.code != "unsupported_parameter":
				t.Fatalf("failure code %q", fl.code)
			}
			if status, e := openAIError(fl); status != 400 || e.Code == nil || e.Type != "invalid_request_error" {
				t.Fatalf("OpenAI error %d %+v", status, e)
			}
			return
		}
		if cr.body.Model == "" || cr.body.Messages == nil {
			t.Fatalf("accepted without model or messages: %+v", cr.body)
		}
		checkSubmission(t, in, submission{tenant: fuzzTenant, conversationID: "conv", body: cr.body})
	})
}
