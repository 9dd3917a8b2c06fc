package modelsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// chatRequest is a decoded and checked chat-completions request.
type chatRequest struct {
	Model        string
	Messages     []message
	Stream       bool
	IncludeUsage bool
	// MaxTokens caps the answer in tokens; zero means no cap.
	MaxTokens int
	// Temperature is accepted and checked but does not change the answer.
	Temperature *float64
}

// message is one chat message with its content flattened to text.
type message struct {
	Role    string
	Content string
}

// wireRequest is the JSON body of POST /v1/chat/completions. Fields the
// simulator does not use are ignored, as a lenient server would.
type wireRequest struct {
	Model               string         `json:"model"`
	Messages            []wireMessage  `json:"messages"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options,omitempty"`
	MaxTokens           *int           `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int           `json:"max_completion_tokens,omitempty"`
	Temperature         *float64       `json:"temperature,omitempty"`
}

// streamOptions is the stream_options object of a request.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// wireMessage is one message of a request. Content is a string, null, or an
// array of content parts of which the "text" parts are used.
type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// contentPart is one element of an array message content.
type contentPart struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// decodeChatRequest decodes and checks a request body. On failure it returns
// the OpenAI error to send; the model is not checked against the served set.
func decodeChatRequest(body []byte) (chatRequest, *apiError) {
	var w wireRequest
	if err := json.Unmarshal(body, &w); err != nil {
		return chatRequest{}, badRequest("invalid_json", fmt.Sprintf("decode request body: %v", err))
	}
	req := chatRequest{
		Model:        w.Model,
		Stream:       w.Stream,
		IncludeUsage: w.StreamOptions != nil && w.StreamOptions.IncludeUsage,
		Temperature:  w.Temperature,
	}
	if strings.TrimSpace(req.Model) == "" {
		return chatRequest{}, badRequest("missing_model", "you must provide a model parameter")
	}
	if len(w.Messages) == 0 {
		return chatRequest{}, badRequest("missing_messages", "messages must contain at least one message")
	}
	req.Messages = make([]message, len(w.Messages))
	for i, m := range w.Messages {
		if m.Role == "" {
			return chatRequest{}, badRequest("invalid_message", fmt.Sprintf("messages[%d]: missing role", i))
		}
		content, err := flattenContent(m.Content)
		if err != nil {
			return chatRequest{}, badRequest("invalid_message", fmt.Sprintf("messages[%d]: %v", i, err))
		}
		req.Messages[i] = message{Role: m.Role, Content: content}
	}
	limit := w.MaxTokens
	if limit == nil {
		limit = w.MaxCompletionTokens
	}
	if limit != nil {
		if *limit < 1 {
			return chatRequest{}, badRequest("invalid_max_tokens", fmt.Sprintf("max_tokens %d: must be at least 1", *limit))
		}
		req.MaxTokens = *limit
	}
	if t := w.Temperature; t != nil && !(*t >= 0 && *t <= 2) {
		return chatRequest{}, badRequest("invalid_temperature", fmt.Sprintf("temperature %v: must be in [0, 2]", *t))
	}
	return req, nil
}

// flattenContent returns the text of a message content: a string, null, or
// an array of parts whose "text" parts are joined with newlines.
func flattenContent(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("decode content: %w", err)
		}
		return s, nil
	case '[':
		var parts []contentPart
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", fmt.Errorf("decode content parts: %w", err)
		}
		var texts []string
		for _, p := range parts {
			if p.Type == "text" {
				texts = append(texts, p.Text)
			}
		}
		return strings.Join(texts, "\n"), nil
	default:
		return "", errors.New("content must be a string, an array of parts or null")
	}
}
