package llm

import (
	"bytes"
	"encoding/json"
	"time"
)

// ChatRequest is one chat-completions call.
type ChatRequest struct {
	// Model names the backend model, such as "sim" or "llama3.1:8b".
	Model string
	// Messages is the conversation so far, oldest first.
	Messages []Message
	// MaxTokens caps the answer's length in tokens; zero leaves it to the
	// server. It is sent as max_tokens.
	MaxTokens int
	// Temperature, when not nil, is sent as the sampling temperature.
	Temperature *float32
}

// Message is one chat message.
type Message struct {
	// Role is "system", "user", "assistant" or another role the backend
	// accepts.
	Role string
	// Content is the message text.
	Content string
}

// ChatResponse is the answer to a ChatRequest.
type ChatResponse struct {
	// Content is the whole answer text.
	Content string
	// FinishReason is why generation stopped: "stop", "length", ... It is
	// empty when the backend did not say.
	FinishReason string
	// Usage counts the call's tokens as the backend reported them; zero when
	// it did not.
	Usage Usage
	// FirstTokenAt is when the first non-empty content delta of a stream
	// arrived, or when a JSON answer's headers arrived. It is zero for a
	// stream that produced no content.
	FirstTokenAt time.Time
}

// Usage counts the tokens of a call.
type Usage struct {
	// PromptTokens is the size of the messages sent.
	PromptTokens int
	// CompletionTokens is the size of the answer.
	CompletionTokens int
	// TotalTokens is their sum, as the backend reported it.
	TotalTokens int
}

// wireRequest is the JSON body sent to POST {BaseURL}/chat/completions.
type wireRequest struct {
	Model         string         `json:"model"`
	Messages      []wireMessage  `json:"messages"`
	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
	MaxTokens     int            `json:"max_tokens,omitempty"`
	Temperature   *float32       `json:"temperature,omitempty"`
}

// wireMessage is one message of a request.
type wireMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// streamOptions asks a stream for a final usage chunk.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// newWireRequest returns the body for req.
func newWireRequest(req ChatRequest, stream bool) wireRequest {
	w := wireRequest{
		Model:       req.Model,
		Messages:    make([]wireMessage, len(req.Messages)),
		MaxTokens:   req.MaxTokens,
		Temperature: req.Temperature,
	}
	for i, m := range req.Messages {
		w.Messages[i] = wireMessage(m)
	}
	if stream {
		w.Stream = true
		w.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	return w
}

// wireCompletion is a chat.completion answer; only the used fields.
type wireCompletion struct {
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Content *string `json:"content"`
		} `json:"message"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *wireUsage `json:"usage"`
}

// wireChunk is a chat.completion.chunk event of a stream; only the used
// fields. Error is set by servers that report failures mid-stream.
type wireChunk struct {
	Choices []wireChunkChoice `json:"choices"`
	Usage   *wireUsage        `json:"usage"`
	Error   json.RawMessage   `json:"error"`
}

// wireChunkChoice is one choice of a chunk.
type wireChunkChoice struct {
	Index        int       `json:"index"`
	Delta        wireDelta `json:"delta"`
	FinishReason *string   `json:"finish_reason"`
}

// wireDelta is the change a chunk carries. Reasoning models stream their
// reasoning under one of two names before the content.
type wireDelta struct {
	Content          *string `json:"content"`
	ReasoningContent *string `json:"reasoning_content"` // vLLM, DeepSeek
	Reasoning        *string `json:"reasoning"`         // Ollama, OpenRouter
}

// wireUsage is the usage object of an answer.
type wireUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// usage converts u, which may be nil.
func (u *wireUsage) usage() Usage {
	if u == nil {
		return Usage{}
	}
	return Usage(*u)
}

// isNull reports whether raw is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || bytes.Equal(raw, []byte("null"))
}
