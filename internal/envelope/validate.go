package envelope

import (
	"fmt"
	"net/url"
	"unicode/utf8"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Lanes of work; each has its own requests topic.
const (
	LaneInteractive = "interactive"
	LaneBatch       = "batch"
)

// Limits every request must keep, wherever it came from.
const (
	MaxConversationIDLen = 128
	MaxMessages          = 256
	MaxMessageBytes      = 256 << 10
	MaxMetadataEntries   = 32
	MaxMetadataBytes     = 1024
	MaxTokensLimit       = 1 << 20
)

// FieldError says which field of a request is wrong and why.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// ValidConversationID reports whether id can be a conversation ID: 1 to 128
// bytes of letters, digits and ._:-, other than "." and "..".
func ValidConversationID(id string) bool {
	if id == "" || len(id) > MaxConversationIDLen || id == "." || id == ".." {
		return false // "." and ".." would name another path in a URL
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// Validate checks a request against the record contract and returns the
// first problem as a *FieldError.
func Validate(req *pb.Request) error {
	if req.GetRequestId() == "" {
		return fieldErr("request_id", "is required")
	}
	if !ValidConversationID(req.GetConversationId()) {
		return fieldErr("conversation_id", "must be 1 to %d characters of letters, digits and ._:-", MaxConversationIDLen)
	}
	switch req.GetLane() {
	case LaneInteractive, LaneBatch:
	default:
		return fieldErr("lane", "must be %q or %q, got %q", LaneInteractive, LaneBatch, req.GetLane())
	}
	if req.GetForgetMemory() {
		// A command to forget the conversation's history: nothing to call.
		if req.GetModel() != "" || len(req.GetMessages()) > 0 || req.GetMemory() {
			return fieldErr("forget_memory", "a forget_memory record has no model, messages or memory")
		}
		return nil
	}
	if req.GetModel() == "" {
		return fieldErr("model", "is required")
	}
	if !utf8.ValidString(req.GetModel()) || len(req.GetModel()) > 256 {
		return fieldErr("model", "must be valid UTF-8 of at most 256 bytes")
	}
	msgs := req.GetMessages()
	if len(msgs) == 0 {
		return fieldErr("messages", "must hold at least one message")
	}
	if len(msgs) > MaxMessages {
		return fieldErr("messages", "holds %d messages; at most %d are allowed", len(msgs), MaxMessages)
	}
	for i, m := range msgs {
		switch m.GetRole() {
		case "system", "user", "assistant", "tool", "developer":
		default:
			return fieldErr(fmt.Sprintf("messages[%d].role", i), "must be one of system, user, assistant, tool, developer; got %q", m.GetRole())
		}
		if len(m.GetContent()) > MaxMessageBytes {
			return fieldErr(fmt.Sprintf("messages[%d].content", i), "is %d bytes; at most %d are allowed", len(m.GetContent()), MaxMessageBytes)
		}
		if !utf8.ValidString(m.GetContent()) {
			return fieldErr(fmt.Sprintf("messages[%d].content", i), "is not valid UTF-8")
		}
	}
	if req.GetMaxTokens() < 0 || req.GetMaxTokens() > MaxTokensLimit {
		return fieldErr("max_tokens", "must be between 0 and %d", MaxTokensLimit)
	}
	if req.Temperature != nil && (req.GetTemperature() < 0 || req.GetTemperature() > 2) {
		return fieldErr("temperature", "must be between 0 and 2")
	}
	if len(req.GetMetadata()) > MaxMetadataEntries {
		return fieldErr("metadata", "holds %d entries; at most %d are allowed", len(req.GetMetadata()), MaxMetadataEntries)
	}
	for k, v := range req.GetMetadata() {
		if k == "" || len(k)+len(v) > MaxMetadataBytes || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fieldErr("metadata", "keys must be non-empty and each entry valid UTF-8 of at most %d bytes", MaxMetadataBytes)
		}
	}
	if w := req.GetWebhookUrl(); w != "" {
		if err := ValidWebhookURL(w); err != nil {
			return fieldErr("webhook_url", "%v", err)
		}
	}
	return nil
}

// MaxWebhookURLLen bounds a request's webhook_url.
const MaxWebhookURLLen = 2048

// ValidWebhookURL checks the shape of a webhook URL: absolute http or https
// with a host, no user info. Whether egress may call the host is its
// allowlist's decision, not this one's.
func ValidWebhookURL(s string) error {
	if len(s) > MaxWebhookURLLen {
		return fmt.Errorf("must be at most %d bytes", MaxWebhookURLLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("must be a URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("must be an absolute http or https URL with a host and no user info")
	}
	return nil
}
