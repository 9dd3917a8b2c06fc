package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// ErrDecode wraps every failure to decode a result record (see
// DecodeError): the record is not a result this build can read. A Reader
// that returns it has moved past the record.
var ErrDecode = errors.New("decode result")

// DecodeError is a record of the results topic that could not be decoded:
// a value that is not a switchboard.v1.Result in the encoding its
// content-type header names, an unknown content-type or schema-version, or
// a result without request ID or body. errors.Is(err, ErrDecode) holds.
type DecodeError struct {
	Topic     string
	Partition int32
	Offset    int64
	// Err says what is wrong with the record.
	Err error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("client: result record %s/%d@%d: %v", e.Topic, e.Partition, e.Offset, e.Err)
}

// Unwrap returns ErrDecode and the cause.
func (e *DecodeError) Unwrap() []error { return []error{ErrDecode, e.Err} }

// Result is one record of the results topic: one chunk of a streamed
// answer, or a request's terminal result (Final or Error). Exactly one of
// Chunk, Final and Error is set.
type Result struct {
	RequestID      string
	ConversationID string
	// Tenant is the request's tenant.
	Tenant string
	// Attempt numbers the tries at the request, from 1. RunID names one
	// processing of it by router-worker: a request processed again after
	// a worker crash starts over under a new RunID at attempt 1, chunk 0.
	// A chunk with a new RunID or a higher Attempt than those before it
	// restarts the answer: drop the chunks gathered so far.
	Attempt int32
	RunID   string
	// Metadata is the request's, copied.
	Metadata map[string]string

	Chunk *Chunk
	Final *Final
	Error *Error

	// Partition and Offset are the record's place in the results topic;
	// a Reader resumes after it from At(Offset+1).
	Partition int32
	Offset    int64
	// Timestamp is the record's timestamp.
	Timestamp time.Time
}

// Terminal reports whether r ends its request (Final or Error).
func (r *Result) Terminal() bool { return r.Final != nil || r.Error != nil }

// Chunk is a piece of a streamed answer.
type Chunk struct {
	// Index counts from 0 within an attempt of a run.
	Index int32
	Delta string
}

// Final is a successful answer.
type Final struct {
	Content      string
	FinishReason string
	Usage        Usage
	// Backend names the backend that answered.
	Backend string
	Timings Timings
}

// Usage is the token accounting the backend reported.
type Usage struct {
	PromptTokens, CompletionTokens, TotalTokens int32
}

// Timings trace a request through the pipeline; a zero time was not
// recorded.
type Timings struct {
	AcceptedAt, DispatchedAt, FirstTokenAt, CompletedAt time.Time
}

// Error is a failed answer.
type Error struct {
	// Code is a stable, machine-readable reason ("unknown_model",
	// "deadline_exceeded", "backend_error", ...).
	Code    string
	Message string
	// Retryable says whether sending the request again may succeed.
	Retryable bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// DecodeResult decodes a record of the results topic, protobuf or JSON by
// its content-type header (protobuf when it has none). It is for consumers
// with a kgo.Client of their own (a consumer group over the whole topic,
// say). Errors are *DecodeError.
func DecodeResult(rec *kgo.Record) (Result, error) {
	res, err := envelope.DecodeResult(rec)
	if err != nil {
		return Result{}, &DecodeError{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Err: err}
	}
	r := Result{
		RequestID:      res.GetRequestId(),
		ConversationID: res.GetConversationId(),
		Tenant:         res.GetTenant(),
		Attempt:        res.GetAttempt(),
		RunID:          res.GetRunId(),
		Metadata:       res.GetMetadata(),
		Partition:      rec.Partition,
		Offset:         rec.Offset,
		Timestamp:      rec.Timestamp,
	}
	switch {
	case res.GetChunk() != nil:
		c := res.GetChunk()
		r.Chunk = &Chunk{Index: c.GetIndex(), Delta: c.GetDelta()}
	case res.GetFinal() != nil:
		f := res.GetFinal()
		u, tm := f.GetUsage(), f.GetTimings()
		r.Final = &Final{Content: f.GetContent(), FinishReason: f.GetFinishReason(), Backend: f.GetBackend(),
			Usage: Usage{PromptTokens: u.GetPromptTokens(), CompletionTokens: u.GetCompletionTokens(), TotalTokens: u.GetTotalTokens()},
			Timings: Timings{AcceptedAt: timeOf(tm.GetAcceptedAt()), DispatchedAt: timeOf(tm.GetDispatchedAt()),
				FirstTokenAt: timeOf(tm.GetFirstTokenAt()), CompletedAt: timeOf(tm.GetCompletedAt())}}
	case res.GetError() != nil:
		e := res.GetError()
		r.Error = &Error{Code: e.GetCode(), Message: e.GetMessage(), Retryable: e.GetRetryable()}
	default:
		return Result{}, &DecodeError{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
			Err: errors.New("result body is none of chunk, final, error")}
	}
	return r, nil
}

func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
