package loadtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// MetadataKey is the request metadata entry that carries the load
// generator's own ID of a request. Switchboard copies metadata into every
// result, so an answer is matched to its request whatever request_id the
// entry point assigned (ingress assigns its own) and even when it arrives
// before the entry point's acknowledgement.
const MetadataKey = "loadtest_id"

// Message is one request the load generator sends.
type Message struct {
	// ID is the load generator's ID of the request (see MetadataKey).
	ID string
	// Conversation is the conversation ID.
	Conversation string
	// Lane is "interactive" or "batch".
	Lane string
	// Model names the model.
	Model string
	// Stream asks for streamed chunks before the final result.
	Stream bool
	// MaxTokens bounds the answer; 0 means the backend's default.
	MaxTokens int32
	// Content is the user message.
	Content string
	// IdempotencyKey, when set, is sent as the request's Idempotency-Key
	// (header or idempotency_key field), so that a resend after a refusal
	// or a broken connection is the same request at ingress (retry.go).
	IdempotencyKey string
}

// Driver submits requests to Switchboard through one entry point (ingress
// HTTP, Kafka). The contract every implementation keeps:
//
//   - Send returns nil only once the entry point has accepted the request
//     for good (ingress answered 202; Kafka acknowledged the record), so an
//     accepted request that is never answered is lost, not "not sent";
//   - a failure is returned as a *SendError whose Code is stable and
//     low-cardinality (an HTTP status and error code, "connect", "timeout",
//     "kafka_produce"), because the report counts errors by code;
//   - Send is safe for concurrent use; the caller serialises the sends of
//     one conversation, so a Driver needs not keep order itself;
//   - Close releases connections; no Send runs during or after it.
type Driver interface {
	Name() string
	Send(ctx context.Context, m Message) error
	Close()
}

// RawSender is implemented by drivers that can send bytes the API would
// not produce itself, for the malformed scenario. kind names the bad input
// (see the Bad* constants); the error is a *SendError for a rejection.
type RawSender interface {
	SendRaw(ctx context.Context, conv string, bad Bad) error
}

// SendError is a failed Send.
type SendError struct {
	// Code is the stable, countable reason, e.g. "http_400_invalid_json",
	// "http_503_unavailable", "connect", "timeout", "kafka_produce".
	Code string
	// Status is the HTTP status (0 for other protocols or no answer).
	Status int
	// Err is the underlying error or the entry point's message.
	Err error
	// RetryAfter is when the entry point said a retry may succeed (HTTP
	// Retry-After, or the retry_after_ms of a WebSocket or gRPC refusal);
	// zero when it did not say.
	RetryAfter time.Duration
}

func (e *SendError) Error() string { return fmt.Sprintf("send: %s: %v", e.Code, e.Err) }
func (e *SendError) Unwrap() error { return e.Err }

// errorCode returns the countable code of a Send error.
func errorCode(err error) string {
	var se *SendError
	if errors.As(err, &se) {
		return se.Code
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	if errors.Is(err, context.Canceled) {
		return "canceled"
	}
	return "other"
}

// AnswerKind tells chunks from terminal results.
type AnswerKind int

// Answer kinds.
const (
	Chunk AnswerKind = iota
	Final
	Failed
)

// Answer is one result as a reader saw it.
type Answer struct {
	// ID is the load generator's request ID from the result's metadata.
	ID string
	// RequestID is Switchboard's request_id.
	RequestID    string
	Conversation string
	Attempt      int32
	Kind         AnswerKind
	// ChunkIndex is the chunk's index (chunks only).
	ChunkIndex int32
	// ErrorCode is the error result's code (Failed only).
	ErrorCode string
	// ModelTime is the model call as the router timed it (dispatch to
	// completion); zero when the result does not say.
	ModelTime time.Duration
	// At is when the reader received the answer.
	At time.Time
}

// Reader delivers answers from one exit point (egress SSE, the results
// topic). The contract:
//
//   - Open starts reading; deliver is called for every answer seen, from
//     any goroutine and possibly concurrently, until Close returns;
//   - Watch makes sure the conversation's answers are delivered, including
//     answers written before Watch (a stream reader replays them); it
//     returns once the subscription is live, or an error;
//   - a reader delivers what it sees, duplicates included: the ledger,
//     not the reader, counts duplicates and order;
//   - a reader whose connection breaks reconnects on its own (resuming
//     from its cursor where the protocol has one) until Close;
//   - Close stops every goroutine and waits for them.
type Reader interface {
	Name() string
	Open(ctx context.Context, deliver func(Answer)) error
	Watch(ctx context.Context, conv string) error
	Close()
}

// roleUser is the role of every message the load generator sends.
const roleUser = "user"

// nameKafka names the driver and the reader that go straight to Kafka.
const nameKafka = "kafka"

// Class names of the scenarios' loads.
const (
	classInteractive = "interactive"
	classBatch       = "batch"
)

// Driver and reader names NewDriver and NewReader know.
var (
	DriverNames = []string{"http", "ws", nameGRPC, nameKafka, nameOpenAI}
	ReaderNames = []string{"sse", "ws", nameGRPC, nameKafka, nameOpenAI}
)

// NewDriver returns the named driver: "http" posts to ingress, "ws" and
// "grpc" submit over ingress's WebSocket and gRPC streams, "kafka"
// produces straight to the requests topics, "openai" calls ingress's
// OpenAI-compatible API (and can be the reader of its own answers).
//
// With several ingress instances (Endpoints.MoreIngress) the ingress
// drivers send each request to the next instance in turn.
func NewDriver(name string, ep Endpoints, kafkaOpts []kgo.Opt) (Driver, error) {
	if len(ep.MoreIngress) > 0 && name != nameKafka {
		return driversOf(ep, func(e Endpoints) (Driver, error) { return NewDriver(name, e, kafkaOpts) })
	}
	switch name {
	case "http":
		if ep.IngressURL == "" {
			return nil, errors.New("driver http: no ingress URL")
		}
		return newHTTPDriver(ep.IngressURL, ep.APIKey, 30*time.Second), nil
	case "ws", nameGRPC:
		return NewCallSender(name, ep)
	case nameKafka:
		if kafkaOpts == nil {
			return nil, errors.New("driver kafka: no brokers")
		}
		return newKafkaDriver(kafkaOpts, ep.Kafka.Topics, ep.Tenant)
	case nameOpenAI:
		if ep.IngressURL == "" {
			return nil, errors.New("driver openai: no ingress URL")
		}
		return newOpenAIDriver(ep.IngressURL, ep.APIKey, 3*time.Minute), nil
	}
	return nil, fmt.Errorf("unknown driver %q (have %v)", name, DriverNames)
}

// NewCallSender returns the named driver that sends several messages in
// one call: "http-batch" posts them to ingress's batch endpoint, "ws"
// sends them one after another on one of a pool of ingress WebSockets,
// "grpc" on one of a pool of ingress SubmitStreams.
func NewCallSender(name string, ep Endpoints) (CallSender, error) {
	if len(ep.MoreIngress) > 0 {
		d, err := driversOf(ep, func(e Endpoints) (Driver, error) { return NewCallSender(name, e) })
		if err != nil {
			return nil, err
		}
		return d.(CallSender), nil
	}
	if name == nameGRPC {
		if ep.IngressGRPC == "" {
			return nil, errors.New("driver grpc: no ingress gRPC address")
		}
		d, err := newGRPCDriver(ep.IngressGRPC, ep.APIKey, 30*time.Second, 4, 16)
		if err != nil {
			return nil, err
		}
		return d, nil
	}
	if ep.IngressURL == "" {
		return nil, fmt.Errorf("driver %s: no ingress URL", name)
	}
	switch name {
	case "http-batch":
		return newHTTPDriver(ep.IngressURL, ep.APIKey, 30*time.Second), nil
	case "ws":
		return newWSDriver(ep.IngressURL, ep.APIKey, 30*time.Second, 64), nil
	}
	return nil, fmt.Errorf("unknown call driver %q (have http-batch, ws, grpc)", name)
}

// ReaderFor returns the named reader for a run whose driver is drv:
// "openai" is drv itself (the answers its calls return), which must then
// be the openai driver; other names are NewReader's.
func ReaderFor(name string, drv Driver, ep Endpoints, kafkaOpts []kgo.Opt) (Reader, error) {
	if name != nameOpenAI {
		return NewReader(name, ep, kafkaOpts)
	}
	if r, err := openaiReaders(drv); err == nil {
		return r, nil
	}
	return nil, fmt.Errorf("reader openai reads the answers of the openai driver's calls; the driver is %s", drv.Name())
}

// NewReader returns the named reader: "sse", "ws" and "grpc" follow
// egress's event streams, WebSockets and gRPC Subscribe streams, "kafka"
// reads the results topic.
//
// With several egress instances (Endpoints.MoreEgress) the stream readers
// follow each conversation on one of them, spread evenly.
func NewReader(name string, ep Endpoints, kafkaOpts []kgo.Opt) (Reader, error) {
	if len(ep.MoreEgress) > 0 && name != nameKafka && name != nameOpenAI {
		return readersOf(ep, func(e Endpoints) (Reader, error) { return NewReader(name, e, kafkaOpts) })
	}
	switch name {
	case "sse":
		if ep.EgressURL == "" {
			return nil, errors.New("reader sse: no egress URL")
		}
		return newSSEReader(ep.EgressURL, ep.APIKey), nil
	case "ws":
		if ep.EgressURL == "" {
			return nil, errors.New("reader ws: no egress URL")
		}
		return newWSReader(ep.EgressURL, ep.APIKey), nil
	case nameGRPC:
		if ep.EgressGRPC == "" {
			return nil, errors.New("reader grpc: no egress gRPC address (egress serves gRPC only with --grpc-addr)")
		}
		r, err := newGRPCReader(ep.EgressGRPC, ep.APIKey, 4)
		if err != nil {
			return nil, err
		}
		return r, nil
	case nameKafka:
		if kafkaOpts == nil {
			return nil, errors.New("reader kafka: no brokers")
		}
		return newKafkaReader(kafkaOpts, ep.Kafka.Topics), nil
	case nameOpenAI:
		return nil, errors.New("reader openai: the answers of the openai driver's calls; use it with --driver openai (ReaderFor)")
	}
	return nil, fmt.Errorf("unknown reader %q (have %v)", name, ReaderNames)
}
