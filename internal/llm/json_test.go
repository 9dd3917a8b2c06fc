package llm

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzDecodeJSON holds decodeJSON (goccy/go-json) to encoding/json on the
// backend's two shapes, a stream chunk and a whole answer: the same inputs
// are refused, and what both accept decodes to the same values.
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"logprobs":null,"finish_reason":null}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`,
		`{"choices":[{"index":0,"delta":{"reasoning_content":"think"}}]}`,
		`{"choices":[],"error":{"message":"overloaded","type":"server_error"}}`,
		`{"choices":[{"index":0,"message":{"role":"assistant","content":"a\u00e9\ud83d\ude00"},"finish_reason":"length"}],"usage":null}`,
		"{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\xffb\\ud800\"}}]}",
		`{"CHOICES":[{"Index":0,"Delta":{"Content":"x"}}]}`,
		`{"choices":[{"index":1.5}]}`,
		`{"choices":null,"choices":[{"index":0}]}`,
		`[]`, `null`, `{"choices":[{"index":0}]} x`, `{"choices":"x"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var stdChunk, fastChunk wireChunk
		stdErr, fastErr := json.Unmarshal(in, &stdChunk), decodeJSON(in, &fastChunk)
		if (stdErr == nil) != (fastErr == nil) {
			t.Fatalf("chunk %q: encoding/json error %v, decodeJSON error %v", in, stdErr, fastErr)
		}
		if stdErr == nil && !reflect.DeepEqual(stdChunk, fastChunk) {
			t.Fatalf("chunk %q: encoding/json %+v, decodeJSON %+v", in, stdChunk, fastChunk)
		}
		var stdAnswer, fastAnswer wireCompletion
		stdErr, fastErr = json.Unmarshal(in, &stdAnswer), decodeJSON(in, &fastAnswer)
		if (stdErr == nil) != (fastErr == nil) {
			t.Fatalf("answer %q: encoding/json error %v, decodeJSON error %v", in, stdErr, fastErr)
		}
		if stdErr == nil && !reflect.DeepEqual(stdAnswer, fastAnswer) {
			t.Fatalf("answer %q: encoding/json %+v, decodeJSON %+v", in, stdAnswer, fastAnswer)
		}
	})
}
