package ingress

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"
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
	// Memory turns the conversation's memory on or off for this request;
	// absent: the tenant's memory setting (see memory.go).
	Memory *bool `json:"memory"`
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

// ack is the 202 answer: the request's ID and, for tenants whose show
// list has kafka_positions, where it now lives in Kafka.
type ack struct {
	RequestID      string `json:"request_id"`
	ConversationID string `json:"conversation_id"`
	Lane           string `json:"lane"`
	Partition      int32  `json:"partition"`
	Offset         int64  `json:"offset"`
	// acceptedAt is when the request was accepted (its record's
	// accepted_at): the OpenAI API's "created".
	acceptedAt time.Time
	// hidePositions leaves partition and offset out of the answer: they
	// would let a tenant count other tenants' traffic.
	hidePositions bool
}

// MarshalJSON writes the ack, without partition and offset when hidden.
func (a ack) MarshalJSON() ([]byte, error) {
	type shown ack // without the method
	if !a.hidePositions {
		return json.Marshal(shown(a))
	}
	return json.Marshal(struct {
		RequestID      string `json:"request_id"`
		ConversationID string `json:"conversation_id"`
		Lane           string `json:"lane"`
	}{a.RequestID, a.ConversationID, a.Lane})
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
	t, err := in.tenants.Set().Authenticate(tenant.BearerToken(header))
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
	if f := memoryHeader(r, &s.body); f != nil {
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
	answer, f := in.runBatch(r.Context(), t, r.Header.Get("Idempotency-Key"), body.Requests)
	if f != nil {
		in.reject("http", f)
		writeFailure(w, f)
		return
	}
	writeJSON(w, http.StatusOK, answer)
}

// runBatch submits a batch's items and answers each. Items are handed to
// the producer one after another in the batch's order and only then waited
// for, so a conversation's items are stored in the order given. Once an
// item of a conversation is refused, the conversation's later items are not
// sent (409 previous_message_failed): they would land ahead of it.
//
// batchKey, the batch's Idempotency-Key, stands for the whole batch: an
// item without a key of its own gets one derived from it and its index, so
// a repeat of the batch is answered with the first acks and produces only
// what failed the first time; the same batch key with another batch is 422.
// Two items with the same key are one request (the second gets the first's
// answer) or, when they differ, the second is 422.
func (in *Ingress) runBatch(ctx context.Context, t *tenant.Tenant, batchKey string, items []batchItem) (batchAnswer, *failure) {
	subs := make([]submission, len(items))
	for i, item := range items {
		subs[i] = submission{protocol: "http", tenant: t, conversationID: item.ConversationID,
			idempotencyKey: item.IdempotencyKey, body: item.messageBody}
		if subs[i].idempotencyKey == "" && batchKey != "" {
			subs[i].idempotencyKey = batchKey + " " + strconv.Itoa(i) // a space: never a client's own key
			subs[i].derivedKey = true
		}
	}
	answer := batchAnswer{Results: make([]batchResult, len(items))}
	if batchKey != "" {
		if !validIdempotencyKey(batchKey) {
			return batchAnswer{}, badRequest("Idempotency-Key", "must be at most %d printable ASCII characters without spaces", MaxIdempotencyKeyLen)
		}
		key := idemKey{tenant: t.Name, key: "batch " + batchKey}
		e, owner, f := in.idem.claim(ctx, key, batchDigest(subs))
		if f != nil {
			return batchAnswer{}, f
		}
		if owner {
			defer func(a *batchAnswer) { in.idem.finish(key, e, ack{}, a.Accepted > 0) }(&answer)
		}
	}
	pend := make([]*pending, len(items))
	sameAs := make([]int, len(items)) // > 0: 1 + the index of the earlier item with the same key
	firstOfKey := map[string]int{}
	failedConv := map[string]int{} // conversation -> index of its refused item
	for i := range subs {
		s := &subs[i]
		if j, ok := failedConv[s.conversationID]; ok {
			f := &failure{status: http.StatusConflict, code: "previous_message_failed", message: fmt.Sprintf(
				"not sent: item %d of conversation %q was refused, and this one would land ahead of it", j, s.conversationID)}
			answer.Results[i] = failedResult(f)
			in.reject("http", f)
			continue
		}
		if j, ok := firstOfKey[s.idempotencyKey]; ok && s.idempotencyKey != "" {
			if subs[j].digest() != s.digest() {
				f := &failure{status: http.StatusUnprocessableEntity, code: "idempotency_key_reused", field: "idempotency_key",
					message: fmt.Sprintf("item %d has this idempotency_key with another request", j)}
				answer.Results[i] = failedResult(f)
				in.reject("http", f)
				failedConv[s.conversationID] = i
				continue
			}
			sameAs[i] = j + 1
			continue
		}
		firstOfKey[s.idempotencyKey] = i
		pend[i] = in.begin(ctx, *s)
		if pend[i].failed() {
			failedConv[s.conversationID] = i
		}
	}
	for i, p := range pend {
		if p == nil {
			continue
		}
		a, f := p.wait()
		if f != nil {
			answer.Results[i] = failedResult(f)
			continue
		}
		answer.Results[i] = batchResult{Ack: &a, Status: http.StatusAccepted}
	}
	for i, j := range sameAs {
		if j > 0 {
			answer.Results[i] = answer.Results[j-1]
		}
	}
	for _, res := range answer.Results {
		if res.Ack != nil {
			answer.Accepted++
		} else {
			answer.Failed++
		}
	}
	return answer, nil
}

func failedResult(f *failure) batchResult {
	e := f.apiError()
	return batchResult{Error: &e, Status: f.status, RetryAfterMS: f.retryAfter.Milliseconds()}
}

// batchDigest identifies a whole batch (its items' digests and keys).
func batchDigest(subs []submission) [sha256.Size]byte {
	h := sha256.New()
	for i := range subs {
		d := subs[i].digest()
		h.Write(d[:])
		h.Write([]byte(subs[i].idempotencyKey))
		h.Write([]byte{0})
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
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

// readJSON reads r's body, at most limit bytes, into v (415 unless the
// Content-Type is application/json, 413, 400).
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *failure {
	b, f := readBody(w, r, limit)
	if f != nil {
		return f
	}
	return decodeJSON(b, v)
}

// readBody reads r's JSON body, at most limit bytes (415 unless the
// Content-Type is application/json, 413, 408, 400).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *failure) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, &failure{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: "send the body as JSON with Content-Type: application/json"}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &failure{status: http.StatusRequestEntityTooLarge, code: "body_too_large",
				message: fmt.Sprintf("the body is larger than %d bytes", limit)}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			w.Header().Set("Connection", "close")
			return nil, &failure{status: http.StatusRequestTimeout, code: "request_timeout", message: "the body did not arrive in time"}
		}
		return nil, invalidJSON("", "reading the body: %v", err)
	}
	return b, nil
}

// invalidJSON is a 400 invalid_json failure; param names the field, if one.
func invalidJSON(param, format string, args ...any) *failure {
	return &failure{status: http.StatusBadRequest, code: "invalid_json", field: param, message: fmt.Sprintf(format, args...)}
}

// decodeJSON decodes exactly one JSON object from b into v, strictly: valid
// UTF-8, no unknown fields, no key twice in one object, nothing after the
// object.
func decodeJSON(b []byte, v any) *failure {
	if !utf8.Valid(b) {
		return invalidJSON("", "the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalidJSON("", "%s", jsonMessage(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalidJSON("", "the body must hold one JSON object and nothing after it")
	}
	if k, dup := duplicateKey(b); dup {
		return invalidJSON(k, "key %q appears twice in one object", k)
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
