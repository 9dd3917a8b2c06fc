package ingress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
)

// chatRequest is a decoded POST /v1/chat/completions body: the native
// request it maps to, and what only the OpenAI answer needs.
type chatRequest struct {
	body         messageBody
	includeUsage bool // stream_options.include_usage
}

// oaiMapped are the body's parameters that are mapped to the native
// request; oaiNeutral are accepted only with the value that changes
// nothing. Every other parameter (tools, top_p, stop, seed, ...) is
// refused with 400 unsupported_parameter, unless it is null.
var (
	oaiMapped  = []string{fieldModel, "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "metadata"}
	oaiNeutral = map[string]string{"n": "1", "logprobs": "false", "store": "false"}
)

// unsupported refuses a parameter the API does not implement.
func unsupported(param, format string, args ...any) *failure {
	return &failure{status: http.StatusBadRequest, code: "unsupported_parameter", field: param, message: fmt.Sprintf(format, args...)}
}

// decodeChatRequest decodes a chat completions body strictly (valid UTF-8,
// one JSON object, no key twice) and maps it to a native request. Only the
// shape is checked here; the values meet the native rules in submit.
func decodeChatRequest(b []byte) (chatRequest, *failure) {
	var cr chatRequest
	if !utf8.Valid(b) {
		return cr, invalidJSON("", "the body is not valid UTF-8")
	}
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&top); err != nil {
		return cr, invalidJSON("", "%s", jsonMessage(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return cr, invalidJSON("", "the body must hold one JSON object and nothing after it")
	}
	if top == nil {
		return cr, invalidJSON("", "the body must be a JSON object")
	}
	if k, dup := duplicateKey(b); dup {
		return cr, invalidJSON(k, "key %q appears twice in one object", k)
	}
	if f := checkParams(top); f != nil {
		return cr, f
	}
	field := func(name string, v any) *failure {
		raw, ok := top[name]
		if !ok || isNull(raw) {
			return nil
		}
		if err := json.Unmarshal(raw, v); err != nil {
			return invalidJSON(name, "%s: %s", name, typeMessage(err))
		}
		return nil
	}
	body := &cr.body
	var maxTokens, maxCompletion *int32
	var opts struct {
		IncludeUsage       *bool `json:"include_usage"`
		IncludeObfuscation *bool `json:"include_obfuscation"`
	}
	for _, f := range []*failure{
		field(fieldModel, &body.Model),
		field("stream", &body.Stream),
		field("max_tokens", &maxTokens),
		field("max_completion_tokens", &maxCompletion),
		field("temperature", &body.Temperature),
		field("metadata", &body.Metadata),
		field("stream_options", &opts),
	} {
		if f != nil {
			return cr, f
		}
	}
	if raw, ok := top["stream_options"]; ok && !isNull(raw) {
		if f := onlyKeys(raw, "stream_options", "include_usage", "include_obfuscation"); f != nil {
			return cr, f
		}
	}
	if opts.IncludeUsage != nil {
		cr.includeUsage = *opts.IncludeUsage
	}
	if f := mapMaxTokens(body, maxTokens, maxCompletion); f != nil {
		return cr, f
	}
	if body.Model == "" {
		return cr, badRequest(fieldModel, "is required")
	}
	raw, ok := top["messages"]
	if !ok || isNull(raw) {
		return cr, badRequest("messages", "is required")
	}
	var msgs []json.RawMessage
	if err := json.Unmarshal(raw, &msgs); err != nil {
		return cr, invalidJSON("messages", "messages: %s", typeMessage(err))
	}
	body.Messages = make([]messageJSON, 0, len(msgs))
	for i, m := range msgs {
		msg, f := decodeChatMessage(m, fmt.Sprintf("messages[%d]", i))
		if f != nil {
			return cr, f
		}
		body.Messages = append(body.Messages, msg)
	}
	return cr, nil
}

// mapMaxTokens maps max_tokens or max_completion_tokens (equal if both).
func mapMaxTokens(body *messageBody, maxTokens, maxCompletion *int32) *failure {
	switch {
	case maxTokens != nil && maxCompletion != nil && *maxTokens != *maxCompletion:
		return badRequest("max_completion_tokens", "max_tokens and max_completion_tokens differ; send one of them")
	case maxCompletion != nil:
		maxTokens = maxCompletion
	}
	if maxTokens != nil {
		if *maxTokens < 1 {
			return badRequest("max_tokens", "must be at least 1")
		}
		body.MaxTokens = *maxTokens
	}
	return nil
}

// checkParams refuses the parameters that are neither mapped nor neutral
// (null ones aside), the first in name order.
func checkParams(top map[string]json.RawMessage) *failure {
	for _, k := range slices.Sorted(maps.Keys(top)) {
		v := top[k]
		if isNull(v) || slices.Contains(oaiMapped, k) {
			continue
		}
		if want, ok := oaiNeutral[k]; ok {
			if string(bytes.TrimSpace(v)) != want {
				return unsupported(k, "%s must be %s (or left out): Switchboard's OpenAI-compatible API does not support other values", k, want)
			}
			continue
		}
		return unsupported(k, "parameter %q is not supported by Switchboard's OpenAI-compatible API", k)
	}
	return nil
}

// decodeChatMessage maps one message: a role and a content that is a
// string or an array of text parts (joined with newlines). Names, tool
// calls and non-text parts are refused.
func decodeChatMessage(raw json.RawMessage, param string) (messageJSON, *failure) {
	var m messageJSON
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return m, invalidJSON(param, "%s must be an object with role and content", param)
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if v := obj[k]; k != "role" && k != "content" && !isNull(v) {
			return m, unsupported(param+"."+k, "%s.%s is not supported by Switchboard's OpenAI-compatible API (only role and text content)", param, k)
		}
	}
	if err := json.Unmarshal(obj["role"], &m.Role); err != nil {
		return m, invalidJSON(param+".role", "%s.role must be a string", param)
	}
	content, ok := obj["content"]
	if !ok || isNull(content) {
		return m, badRequest(param+".content", "is required")
	}
	if err := json.Unmarshal(content, &m.Content); err == nil {
		return m, nil
	}
	var parts []map[string]json.RawMessage
	if err := json.Unmarshal(content, &parts); err != nil {
		return m, invalidJSON(param+".content", "%s.content must be a string or an array of text parts", param)
	}
	texts := make([]string, 0, len(parts))
	for j, p := range parts {
		pp := fmt.Sprintf("%s.content[%d]", param, j)
		var typ, text string
		if json.Unmarshal(p["type"], &typ) != nil || typ != "text" {
			return m, unsupported(pp+".type", "only text content parts are supported")
		}
		if json.Unmarshal(p["text"], &text) != nil {
			return m, invalidJSON(pp+".text", "%s.text must be a string", pp)
		}
		for _, k := range slices.Sorted(maps.Keys(p)) {
			if v := p[k]; k != "type" && k != "text" && !isNull(v) {
				return m, unsupported(pp+"."+k, "%s.%s is not supported", pp, k)
			}
		}
		texts = append(texts, text)
	}
	m.Content = strings.Join(texts, "\n")
	return m, nil
}

// onlyKeys refuses an object with keys other than allowed (nulls aside).
func onlyKeys(raw json.RawMessage, param string, allowed ...string) *failure {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return invalidJSON(param, "%s must be an object", param)
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if v := obj[k]; !slices.Contains(allowed, k) && !isNull(v) {
			return unsupported(param+"."+k, "%s.%s is not supported", param, k)
		}
	}
	return nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// typeMessage describes why a value did not decode.
func typeMessage(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("must be a JSON %s, not %s", typeErr.Type.Kind(), typeErr.Value)
	}
	return err.Error()
}
