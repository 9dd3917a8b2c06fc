package ingress

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestChatCompletionJSONResults: the OpenAI-compatible API's answer reader
// reads results written as JSON (router-worker's --results-encoding json)
// as it reads protobuf ones: a completion, and a stream of chunks (with a
// retry's restart) that adds up to the answer.
func TestChatCompletionJSONResults(t *testing.T) {
	s := startOpenAI(t, nil)
	const meta = `,"metadata":{"results_encoding":"json"}`
	res, body := chat(t, s.url, `{"model":"sim","messages":[{"role":"user","content":"hi"}]`+meta+`}`, nil)
	var c oaiCompletion
	if err := json.Unmarshal(body, &c); err != nil || res.StatusCode != 200 || len(c.Choices) != 1 ||
		c.Choices[0].Message.Content != "Hello, world" || c.Usage.TotalTokens != 5 {
		t.Errorf("completion: %d %s (%v)", res.StatusCode, body, err)
	}
	for _, model := range []string{"sim", "restart"} {
		res, body := chat(t, s.url, `{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]`+meta+`}`, nil)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", model, res.StatusCode, body)
		}
		data := readSSE(t, strings.NewReader(string(body)))
		if len(data) < 2 || data[len(data)-1] != "[DONE]" {
			t.Fatalf("%s: events %q", model, data)
		}
		var text strings.Builder
		for _, d := range data[:len(data)-1] {
			var ch struct {
				Choices []struct {
					Delta struct {
						Content string `json:"content"`
					} `json:"delta"`
				} `json:"choices"`
			}
			if err := json.Unmarshal([]byte(d), &ch); err != nil {
				t.Fatalf("%s: event %q: %v", model, d, err)
			}
			for _, c := range ch.Choices {
				text.WriteString(c.Delta.Content)
			}
		}
		if text.String() != "Hello, world" {
			t.Errorf("%s: streamed %q, want Hello, world", model, text.String())
		}
	}
	waitNoWaiters(t, s.in.answers)
}
