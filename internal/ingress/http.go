package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// messageBody is the JSON body of POST /v1/conversations/{id}/messages.
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
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, e apiError) {
	writeJSON(w, status, map[string]apiError{"error": e})
}

func (in *Ingress) handleMessage(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	lane := "unknown"
	status := http.StatusAccepted
	defer func() {
		in.metrics.requests.WithLabelValues(lane, strconv.Itoa(status)).Inc()
		in.metrics.latency.WithLabelValues(lane).Observe(time.Since(start).Seconds())
	}()
	fail := func(code int, e apiError) {
		status = code
		writeError(w, code, e)
	}

	req, ferr := in.parseMessage(w, r)
	if ferr != nil {
		fail(ferr.status, ferr.apiError)
		return
	}
	lane = req.GetLane()
	rec, err := envelope.EncodeRequest(in.topics[lane], req)
	if err != nil {
		fail(http.StatusInternalServerError, apiError{Code: "internal", Message: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), in.cfg.ProduceTimeout)
	defer cancel()
	res := in.client.ProduceSync(ctx, rec)
	if err := res.FirstErr(); err != nil {
		if errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) {
			fail(http.StatusRequestEntityTooLarge, apiError{Code: "body_too_large", Message: "the request is larger than its topic accepts"})
			return
		}
		in.log.Warn("produce failed", "conversation_id", req.GetConversationId(), "request_id", req.GetRequestId(), "err", err)
		w.Header().Set("Retry-After", "1")
		fail(http.StatusServiceUnavailable, apiError{Code: "unavailable",
			Message: "Kafka did not acknowledge the request in time; it was not accepted, though it may still have been stored: a retry can be answered twice"})
		return
	}
	writeJSON(w, http.StatusAccepted, ack{
		RequestID:      req.GetRequestId(),
		ConversationID: req.GetConversationId(),
		Lane:           lane,
		Partition:      rec.Partition,
		Offset:         rec.Offset,
	})
}

type requestError struct {
	status int
	apiError
}

// parseMessage reads and validates the body into a Request.
func (in *Ingress) parseMessage(w http.ResponseWriter, r *http.Request) (*pb.Request, *requestError) {
	conv := r.PathValue("conversation_id")
	if !envelope.ValidConversationID(conv) {
		return nil, &requestError{http.StatusBadRequest, apiError{Code: "invalid_request", Field: "conversation_id",
			Message: fmt.Sprintf("conversation_id must be 1 to %d characters of letters, digits and ._:-", envelope.MaxConversationIDLen)}}
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, &requestError{http.StatusUnsupportedMediaType, apiError{Code: "unsupported_media_type", Message: "the body must be application/json"}}
		}
	}
	var body messageBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, in.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &requestError{http.StatusRequestEntityTooLarge, apiError{Code: "body_too_large",
				Message: fmt.Sprintf("the body is larger than %d bytes", in.cfg.MaxBodyBytes)}}
		}
		return nil, &requestError{http.StatusBadRequest, apiError{Code: "invalid_json", Message: jsonMessage(err)}}
	}
	if dec.More() {
		return nil, &requestError{http.StatusBadRequest, apiError{Code: "invalid_json", Message: "the body must hold one JSON object"}}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &requestError{http.StatusBadRequest, apiError{Code: "invalid_json", Message: "unexpected data after the JSON object"}}
	}
	if body.Lane == "" {
		body.Lane = envelope.LaneInteractive
	}
	if body.TimeoutMS < 0 {
		return nil, &requestError{http.StatusBadRequest, apiError{Code: "invalid_request", Field: "timeout_ms", Message: "must not be negative"}}
	}
	now := time.Now()
	req := &pb.Request{
		RequestId:      uuid.Must(uuid.NewV7()).String(),
		ConversationId: conv,
		Tenant:         "default",
		Lane:           body.Lane,
		Model:          body.Model,
		Stream:         body.Stream,
		MaxTokens:      body.MaxTokens,
		Temperature:    body.Temperature,
		Metadata:       body.Metadata,
		WebhookUrl:     body.WebhookURL,
		AcceptedAt:     timestamppb.New(now),
	}
	if body.TimeoutMS > 0 {
		req.Deadline = timestamppb.New(now.Add(time.Duration(body.TimeoutMS) * time.Millisecond))
	}
	for _, m := range body.Messages {
		req.Messages = append(req.Messages, &pb.Message{Role: m.Role, Content: m.Content})
	}
	if err := envelope.Validate(req); err != nil {
		e := apiError{Code: "invalid_request", Message: err.Error()}
		var fe *envelope.FieldError
		if errors.As(err, &fe) {
			e.Field = fe.Field
		}
		return nil, &requestError{http.StatusBadRequest, e}
	}
	return req, nil
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
