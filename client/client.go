// Package client produces requests to Switchboard's requests topics and
// reads their results from the results topic, straight on Kafka with
// franz-go: for Go producers and consumers that live next to Kafka and skip
// ingress's HTTP API and egress's streams.
//
// The records it writes are those ingress writes (docs/RECORDS.md): keyed by
// conversation ID, a switchboard.v1.Request value as protobuf (the default)
// or protojson, and the content-type, schema-version and request-id
// headers. Writing to the topics directly skips ingress's authentication,
// rate limits and admission: topic write access is the permission.
//
// A request's results come back on the results topic, keyed by the same
// conversation ID, so they are in one partition, in the conversation's
// order: zero or more chunks (when the request streams), then exactly one
// terminal result, a final answer or an error. A Reader follows one
// conversation's partition from an offset and yields its results in order,
// decoding each record by its content-type header (router-worker writes
// protobuf or, with --results-encoding json, protojson). Result.Offset lets
// a reader that stopped resume after the last result it handled.
//
// Delivery is at-least-once. Request IDs make repeats harmless: a request
// sent again with the same RequestID (or the same tenant and
// IdempotencyKey, from which the ID is derived as ingress derives it) is
// answered once by router-worker within its dedupe window, and a Reader
// drops repeated results unless asked to keep them.
//
// A Client is safe for concurrent use. A Reader is read by one goroutine;
// Close may come from another and ends a waiting Next.
package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Encoding is how request values are written.
type Encoding int

// Encodings of request values. Both are read by router-worker.
const (
	// Protobuf writes switchboard.v1.Request in protobuf
	// (content-type application/x-protobuf), as ingress does.
	Protobuf Encoding = iota
	// JSON writes it in protojson with the .proto field names
	// (content-type application/json).
	JSON
)

// Lanes: each has its own requests topic and worker budget.
const (
	LaneInteractive = "interactive"
	LaneBatch       = "batch"
)

// DefaultTopicPrefix is topics.yaml's prefix of every topic name.
const DefaultTopicPrefix = "switchboard."

// ErrInvalidRequest wraps every error that a Request breaks the record
// contract with (a missing model, a bad conversation ID, ...): the request
// was not sent, and sending it again will not help.
var ErrInvalidRequest = errors.New("invalid request")

// Config configures a Client.
type Config struct {
	// Kafka are the franz-go options that reach the cluster:
	// kgo.SeedBrokers (required) and, where the cluster needs them,
	// kgo.DialTLSConfig, kgo.SASL, kgo.ClientID. The producer keeps
	// franz-go's defaults (acks=all, idempotent writes); the partitioner
	// is always franz-go's default (murmur2 on the key, as ingress and
	// the Java client), so a conversation's requests share a partition
	// with those ingress writes.
	Kafka []kgo.Opt
	// TopicPrefix is the prefix of the topic names (topics.yaml's, or
	// the services' --topic-prefix). Default DefaultTopicPrefix.
	TopicPrefix string
	// Encoding of the request records. Default Protobuf.
	Encoding Encoding
}

// Client sends requests and opens readers of results.
type Client struct {
	cfg        Config
	kc         *kgo.Client
	requests   map[string]string // lane -> topic
	results    string
	envEncoded envelope.Encoding
}

// New returns a client. It does not wait for the cluster: the first Send or
// Results does.
func New(cfg Config) (*Client, error) {
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = DefaultTopicPrefix
	}
	var enc envelope.Encoding
	switch cfg.Encoding {
	case Protobuf:
		enc = envelope.EncodingProtobuf
	case JSON:
		enc = envelope.EncodingJSON
	default:
		return nil, fmt.Errorf("client: unknown encoding %d", cfg.Encoding)
	}
	spec, err := topicspec.Load("")
	if err != nil {
		return nil, fmt.Errorf("client: topics: %w", err)
	}
	spec = spec.WithPrefix(cfg.TopicPrefix)
	kc, err := kgo.NewClient(append(cfg.Kafka[:len(cfg.Kafka):len(cfg.Kafka)],
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))...)
	if err != nil {
		return nil, fmt.Errorf("client: kafka: %w", err)
	}
	return &Client{
		cfg: cfg,
		kc:  kc,
		requests: map[string]string{
			LaneInteractive: spec.Name(topicspec.RequestsInteractive),
			LaneBatch:       spec.Name(topicspec.RequestsBatch),
		},
		results:    spec.Name(topicspec.Results),
		envEncoded: enc,
	}, nil
}

// Close flushes nothing and closes the client's Kafka connections. Readers
// opened by Results stay open until their own Close.
func (c *Client) Close() { c.kc.Close() }

// ResultsTopic is the name of the results topic.
func (c *Client) ResultsTopic() string { return c.results }

// Message is one chat message.
type Message struct {
	// Role is "system", "user", "assistant", "tool" or "developer".
	Role    string
	Content string
}

// Request is one piece of work for a model. ConversationID, Model and
// Messages are required; the rest have defaults.
type Request struct {
	// ConversationID keys the record: a conversation's requests are
	// answered one at a time, in the order they were written. 1 to 128
	// letters, digits and ._:-.
	ConversationID string
	// RequestID identifies the request end to end; its results carry it.
	// Give a stable ID derived from your own business key, so that sending
	// again after a failed or timed-out Send yields the same ID and the
	// repeat is dropped. Leave it empty to derive it from IdempotencyKey,
	// or, when that is empty too, to get a new UUIDv7.
	RequestID string
	// IdempotencyKey, when set (and RequestID is not), derives RequestID
	// from Tenant and the key exactly as ingress does for its
	// Idempotency-Key header (RequestIDForKey), so a request sent through
	// ingress and again through this client counts as one.
	IdempotencyKey string
	// Tenant the work is for. Default "default". Egress shows a result
	// only to API keys of its tenant.
	Tenant string
	// Lane is LaneInteractive (the default) or LaneBatch; it picks the
	// requests topic.
	Lane string
	// Model is the model name or alias router-worker resolves to a
	// backend.
	Model    string
	Messages []Message
	// Stream asks for chunk results before the final one.
	Stream bool
	// MaxTokens bounds the completion; 0 is the backend's default.
	MaxTokens int32
	// Temperature is passed to the backend when set.
	Temperature *float32
	// Deadline, when set, is the time after which the request is not
	// worth answering: router-worker answers a deadline_exceeded error.
	Deadline time.Time
	// Metadata is copied into every result.
	Metadata map[string]string
	// WebhookURL, when set, is where egress POSTs the terminal result (its
	// host must be on egress's allowlist; see docs/WEBHOOKS.md).
	WebhookURL string
}

// RequestIDForKey returns the request ID ingress gives a request of tenant
// sent with Idempotency-Key key: a UUIDv5 of the tenant and key.
func RequestIDForKey(tenant, key string) string { return envelope.RequestIDForKey(tenant, key) }

// Record returns the Kafka record of req, as Send produces it: topic of its
// lane, key, value in the client's encoding, headers. It is for producers
// that write with a kgo.Client of their own (in a transaction, say).
// Errors wrap ErrInvalidRequest.
func (c *Client) Record(req Request) (*kgo.Record, error) {
	m, err := c.request(req, time.Now())
	if err != nil {
		return nil, err
	}
	rec, err := envelope.EncodeRequestAs(c.requests[m.GetLane()], m, c.envEncoded)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return rec, nil
}

func (c *Client) request(req Request, now time.Time) (*pb.Request, error) {
	m := &pb.Request{
		RequestId:      req.RequestID,
		ConversationId: req.ConversationID,
		Tenant:         req.Tenant,
		Lane:           req.Lane,
		Model:          req.Model,
		Stream:         req.Stream,
		MaxTokens:      req.MaxTokens,
		Temperature:    req.Temperature,
		Metadata:       req.Metadata,
		WebhookUrl:     req.WebhookURL,
		AcceptedAt:     timestamppb.New(now),
	}
	if m.Tenant == "" {
		m.Tenant = "default"
	}
	if m.Lane == "" {
		m.Lane = LaneInteractive
	}
	switch {
	case req.RequestID != "" && req.IdempotencyKey != "":
		return nil, fmt.Errorf("client: %w: set RequestID or IdempotencyKey, not both", ErrInvalidRequest)
	case !envelope.ValidIdempotencyKey(req.IdempotencyKey):
		return nil, fmt.Errorf("client: %w: IdempotencyKey must be at most %d printable ASCII characters without spaces (as ingress's Idempotency-Key)",
			ErrInvalidRequest, envelope.MaxIdempotencyKeyLen)
	case req.IdempotencyKey != "":
		m.RequestId = RequestIDForKey(m.Tenant, req.IdempotencyKey)
	case req.RequestID == "":
		m.RequestId = uuid.Must(uuid.NewV7()).String()
	}
	if !req.Deadline.IsZero() {
		m.Deadline = timestamppb.New(req.Deadline)
	}
	for _, msg := range req.Messages {
		m.Messages = append(m.Messages, &pb.Message{Role: msg.Role, Content: msg.Content})
	}
	if err := envelope.Validate(m); err != nil {
		return nil, fmt.Errorf("client: %w: %w", ErrInvalidRequest, err)
	}
	return m, nil
}

// Ack says where a sent request was stored.
type Ack struct {
	RequestID string
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
}

// Send produces req and returns once the brokers acknowledged it (acks=all).
// An error other than ErrInvalidRequest leaves it unknown whether the
// request was stored: send it again with the same RequestID or
// IdempotencyKey, and the repeat is dropped.
func (c *Client) Send(ctx context.Context, req Request) (Ack, error) {
	rec, err := c.Record(req)
	if err != nil {
		return Ack{}, err
	}
	if err := c.kc.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return Ack{}, fmt.Errorf("client: produce to %s: %w", rec.Topic, err)
	}
	return Ack{RequestID: envelope.Header(rec, envelope.HeaderRequestID), Topic: rec.Topic,
		Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp}, nil
}

// admin returns an admin client on the client's connections.
func (c *Client) admin() *kadm.Client { return kadm.NewClient(c.kc) }
