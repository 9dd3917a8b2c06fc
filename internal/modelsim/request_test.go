package modelsim

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodeChatRequest(t *testing.T) {
	temp := 0.7
	tests := []struct {
		name     string
		body     string
		want     chatRequest
		wantCode string
	}{
		{
			name: "full",
			body: `{"model":"sim","messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":5,"temperature":0.7,"top_p":1}`,
			want: chatRequest{Model: "sim", Messages: []message{{"system", "s"}, {"user", "u"}}, Stream: true, IncludeUsage: true, MaxTokens: 5, Temperature: &temp},
		},
		{
			name: "max completion tokens",
			body: `{"model":"sim","messages":[{"role":"user","content":"u"}],"max_completion_tokens":9}`,
			want: chatRequest{Model: "sim", Messages: []message{{"user", "u"}}, MaxTokens: 9},
		},
		{
			name: "content parts and null",
			body: `{"model":"sim","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url"},{"type":"text","text":"b"}]},{"role":"assistant","content":null}]}`,
			want: chatRequest{Model: "sim", Messages: []message{{"user", "a\nb"}, {"assistant", ""}}},
		},
		{name: "not json", body: `hello`, wantCode: "invalid_json"},
		{name: "array", body: `[]`, wantCode: "invalid_json"},
		{name: "messages not array", body: `{"model":"sim","messages":"x"}`, wantCode: "invalid_json"},
		{name: "no messages", body: `{"model":"sim"}`, wantCode: "missing_messages"},
		{name: "no model", body: `{"messages":[{"role":"user","content":"u"}]}`, wantCode: "missing_model"},
		{name: "no role", body: `{"model":"sim","messages":[{"content":"u"}]}`, wantCode: "invalid_message"},
		{name: "bad parts", body: `{"model":"sim","messages":[{"role":"user","content":[1]}]}`, wantCode: "invalid_message"},
		{name: "negative max tokens", body: `{"model":"sim","messages":[{"role":"user","content":"u"}],"max_tokens":-1}`, wantCode: "invalid_max_tokens"},
		{name: "negative temperature", body: `{"model":"sim","messages":[{"role":"user","content":"u"}],"temperature":-0.1}`, wantCode: "invalid_temperature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, apiErr := decodeChatRequest([]byte(tt.body))
			if tt.wantCode != "" {
				if apiErr == nil || apiErr.Code != tt.wantCode || apiErr.Status != 400 {
					t.Fatalf("error = %+v, want 400 %s", apiErr, tt.wantCode)
				}
				return
			}
			if apiErr != nil {
				t.Fatalf("error = %+v, want none", apiErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// FuzzChatRequest checks that the decoder never panics, that what it accepts
// is well formed, and that re-encoding an accepted request decodes to the
// same request.
func FuzzChatRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model":"sim","messages":[{"role":"user","content":"hello"}]}`,
		`{"model":"sim","messages":[{"role":"user","content":[{"type":"text","text":"a"}]}],"stream":true,"stream_options":{"include_usage":true},"max_tokens":3,"temperature":1}`,
		`{"model":"sim","messages":[{"role":"assistant","content":null}],"max_completion_tokens":1}`,
		`{"model":"","messages":[]}`,
		`{"messages":[{"role":"user","content":7}]}`,
		`null`, `{}`, `[`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, apiErr := decodeChatRequest(body)
		if apiErr != nil {
			if apiErr.Status != 400 || apiErr.Code == "" || apiErr.Message == "" {
				t.Fatalf("incomplete error %+v", apiErr)
			}
			return
		}
		if req.Model == "" || len(req.Messages) == 0 || req.MaxTokens < 0 {
			t.Fatalf("accepted ill-formed request %+v", req)
		}
		w := wireRequest{Model: req.Model, Stream: req.Stream, Temperature: req.Temperature}
		if req.IncludeUsage {
			w.StreamOptions = &streamOptions{IncludeUsage: true}
		}
		if req.MaxTokens > 0 {
			w.MaxTokens = &req.MaxTokens
		}
		for _, m := range req.Messages {
			content, err := json.Marshal(m.Content)
			if err != nil {
				t.Fatal(err)
			}
			w.Messages = append(w.Messages, wireMessage{Role: m.Role, Content: content})
		}
		again, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		req2, apiErr := decodeChatRequest(again)
		if apiErr != nil {
			t.Fatalf("re-encoded %s rejected: %+v", again, apiErr)
		}
		if !reflect.DeepEqual(req, req2) {
			t.Fatalf("round trip changed request:\n%+v\n%+v", req, req2)
		}
	})
}
