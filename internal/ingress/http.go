package ingress

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"unicode/utf8"

	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// messageBody is the JSON body of POST /v1/conversations/{id}/messages, and
// the request part of a batch item and of a WebSocket submit frame.
type messageBody struct {
	Model       string            `json:"model"`
	Messages    []messageJSON     `json:"messages"`
	Stream      bool              `json:"stream"`
	Lane        string            `json:"lane"`
	MaxTokens   int32             `json:"max_tokens"`
	Temperature *float32          `json:"temperature"`
	TimeoutMS   int64             `json:"timeout_ms"`
	Metadata    map[string]string `json:"metadata"`
	WebhookURL  string            `json:"webhook_url"`
}

type messageJSON struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// batchBody is the body of POST /v1/messages:batch.
type batchBody struct {
	Requests []batchItem `json:"requests"`
}

// batchItem is one request of a batch: a message body with its
// conversation and, optionally, its own idempotency key.
type batchItem struct {
	ConversationID string `json:"conversation_id"`
	IdempotencyKey string `json:"idempotency_key"`
	messageBody
}

// batchResult answers one batch item: its ack, or its error and the status
// it would have had alone.
type batchResult struct {
	Ack          *ack      `json:"ack,omitempty"`
	Error        *apiError `json:"error,omitempty"`
	Status       int       `json:"status"`
	RetryAfterMS int64     `json:"retry_after_ms,omitempty"`
}

type batchAnswer struct {
	Accepted int           `json:"accepted"`
	Failed   int           `json:"failed"`
	Results  []batchResult `json:"results"`
}

// ack is the 202 answer: where the request now lives in Kafka.
type ack struct {
	RequestID      string `json:"request_id"`
	ConversationID string `json:"conversation_id"`
	Lane           string `json:"lane"`
	Partition      int32  `json:"partition"`
	Offset         int64  `json:"offset"`
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone
}

func writeFailure(w http.ResponseWriter, f *failure) {
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", f.retryAfterSeconds())
	}
	if f.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
	}
	writeJSON(w, f.status, map[string]apiError{"error": f.apiError()})
}

// authenticate finds the tenant of the request's bearer token.
func (in *Ingress) authenticate(header string) (*tenant.Tenant, *failure) {
	t, err := in.cfg.Tenants.Authenticate(tenant.BearerToken(header))
	switch {
	case errors.Is(err, tenant.ErrNoKey):
		return nil, &failure{status: http.StatusUnauthorized, code: "unauthenticated", message: "send an API key as Authorization: Bearer KEY"}
	case err != nil:
		return nil, &failure{status: http.StatusUnauthorized, code: "invalid_api_key", message: "the API key is not valid"}
	}
	return t, nil
}

func (in *Ingress) handleMessage(w http.ResponseWriter, r *http.Request) {
	t, f := in.authenticate(r.Header.Get("Authorization"))
	if f != nil {
		in.reject("http", f)
		writeFailure(w, f)
		return
	}
	s := submission{protocol: "http", tenant: t, conversationID: r.PathValue("conversation_id"),
		idempotencyKey: r.Header.Get("Idempotency-Key")}
	if f := readJSON(w, r, in.cfg.MaxBodyBytes, &s.body); f != nil {
		in.reject("http", f)
		writeFailure(w, f)
		return
	}
	a, f := in.submit(r.Context(), s)
	if f != nil {
		writeFailure(w, f)
		return
	}
	writeJSON(w, http.StatusAccepted, a)
}

func (in *Ingress) handleBatch(w http.ResponseWriter, r *http.Request) {
	t, f := in.authenticate(r.Header.Get("Authorization"))
	if f != nil {
		in.reject("http", f)
		writeFailure(w, f)
		return
	}
	var body batchBody
	if f := readJSON(w, r, in.cfg.MaxBatchBytes, &body); f != nil {
		in.reject("http", f)
		writeFailure(w, f)
		return
	}
	if f := checkBatch(len(body.Requests), in.cfg.MaxBatchItems); f != nil {
		in.reject("http", f)
		writeFailure(w, f)
		return
	}
	answer := batchAnswer{Results: make([]batchResult, len(body.Requests))}
	var wg sync.WaitGroup
	for i, item := range body.Requests {
		wg.Go(func() { //nolint:contextcheck // the closure passes r.Context() to submit
			a, f := in.submit(r.Context(), submission{protocol: "http", tenant: t, conversationID: item.ConversationID,
				idempotencyKey: item.IdempotencyKey, body: item.messageBody})
			if f != nil {
				e := f.apiError()
				answer.Results[i] = batchResult{Error: &e, Status: f.status, RetryAfterMS: f.retryAfter.Milliseconds()}
				return
			}
			answer.Results[i] = batchResult{Ack: &a, Status: http.StatusAccepted}
		})
	}
	wg.Wait()
	for _, res := range answer.Results {
		if res.Ack != nil {
			answer.Accepted++
		} else {
			answer.Failed++
		}
	}
	writeJSON(w, http.StatusOK, answer)
}

func checkBatch(n, maxItems int) *failure {
	if n == 0 {
		return badRequest("requests", "must hold at least one request")
	}
	if n > maxItems {
		return badRequest("requests", "holds %d requests; at most %d are allowed", n, maxItems)
	}
	return nil
}

// readJSON reads r's body, at most limit bytes, into v (415, 413, 400).
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *failure {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return &failure{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", message: "the body must be application/json"}
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &failure{status: http.StatusRequestEntityTooLarge, code: "body_too_large",
				message: fmt.Sprintf("the body is larger than %d bytes", limit)}
		}
		return &failure{status: http.StatusBadRequest, code: "invalid_json", message: "reading the body: " + err.Error()}
	}
	return decodeJSON(b, v)
}

// decodeJSON decodes exactly one JSON object from b into v, strictly: valid
// UTF-8, no unknown fields, nothing after the object.
func decodeJSON(b []byte, v any) *failure {
	if !utf8.Valid(b) {
		return &failure{status: http.StatusBadRequest, code: "invalid_json", message: "the body is not valid UTF-8"}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &failure{status: http.StatusBadRequest, code: "invalid_json", message: jsonMessage(err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &failure{status: http.StatusBadRequest, code: "invalid_json", message: "the body must hold one JSON object and nothing after it"}
	}
	return nil
}

// jsonMessage turns a decoding error into a message that names the field.
func jsonMessage(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		return fmt.Sprintf("field %q must be a JSON %s", typeErr.Field, typeErr.Type.Kind())
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr)
	case errors.Is(err, io.EOF):
		return "the body is empty; send a JSON object"
	default:
		return err.Error()
	}
}
