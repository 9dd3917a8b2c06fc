// Package ingress is the front door of the pipeline: it takes requests over
// HTTP, validates them, and produces them as records keyed by conversation ID
// to their lane's requests topic. It answers only after the broker has
// acknowledged the record, so an acknowledged request is never lost.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/httpserve"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// Config configures an ingress. The zero value of every field but Topics is
// a working default.
type Config struct {
	// Addr is the HTTP listen address. Default 127.0.0.1:8080.
	Addr string
	// Kafka says how to reach the cluster.
	Kafka kafkaconf.Config
	// Topics names the topics (from topics.yaml). Required.
	Topics *topicspec.Spec
	// MaxBodyBytes bounds a request body. Default 1 MiB.
	MaxBodyBytes int64
	// ProduceTimeout bounds how long a request waits for the broker's
	// acknowledgement before it is answered 503. Default 10s.
	ProduceTimeout time.Duration
	// ShutdownGrace bounds how long open requests may finish after a stop.
	// Default 10s.
	ShutdownGrace time.Duration
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry receives the service's metrics. Default: a new registry.
	Registry *prometheus.Registry
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 10 * time.Second
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = telemetry.NewRegistry()
	}
}

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	if c.Topics == nil {
		return errors.New("ingress: topics spec is required")
	}
	if c.MaxBodyBytes < 0 || c.ProduceTimeout < 0 || c.ShutdownGrace < 0 {
		return errors.New("ingress: limits and timeouts must not be negative")
	}
	return c.Kafka.Validate()
}

// Ingress accepts requests and produces them to Kafka.
type Ingress struct {
	cfg     Config
	log     *slog.Logger
	client  *kgo.Client
	topics  map[string]string // lane -> topic
	metrics *metrics
	handler http.Handler
}

// New validates cfg and connects a producer; it does not wait for the
// cluster to answer (see /readyz).
func New(cfg Config) (*Ingress, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Kafka = cfg.Kafka.Instrument("ingress", cfg.Registry)
	opts := append(cfg.Kafka.Opts(cfg.Logger),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(max(cfg.ProduceTimeout, time.Second)), // kgo's floor is 1s
		kgo.ProducerLinger(0),
	)
	if n := cfg.Topics.MaxMessageBytes(topicspec.RequestsInteractive, topicspec.RequestsBatch); n > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(n))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("ingress: kafka client: %w", err)
	}
	in := &Ingress{
		cfg:    cfg,
		log:    cfg.Logger,
		client: cl,
		topics: map[string]string{
			envelope.LaneInteractive: cfg.Topics.Name(topicspec.RequestsInteractive),
			envelope.LaneBatch:       cfg.Topics.Name(topicspec.RequestsBatch),
		},
		metrics: newMetrics(cfg.Registry),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/conversations/{conversation_id}/messages", in.handleMessage)
	telemetry.Mount(mux, cfg.Registry, in.ready)
	in.handler = cfg.Kafka.Tracing.HTTP(mux)
	return in, nil
}

// Handler returns the HTTP API, for tests that serve it themselves.
func (in *Ingress) Handler() http.Handler { return in.handler }

// Run serves the API on cfg.Addr until ctx is done, then stops accepting,
// lets open requests finish (their records are flushed), and closes the
// producer.
func (in *Ingress) Run(ctx context.Context) error {
	defer in.client.Close()
	ln, err := net.Listen("tcp", in.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ingress: listen: %w", err)
	}
	err = httpserve.Run(ctx, ln, in.handler, in.cfg.ShutdownGrace, in.log)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.ShutdownGrace)
	defer cancel()
	if ferr := in.client.Flush(fctx); ferr != nil && err == nil {
		err = fmt.Errorf("ingress: flush: %w", ferr)
	}
	return err
}

func (in *Ingress) ready(r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := in.client.Ping(ctx); err != nil {
		return fmt.Errorf("kafka unreachable: %w", err)
	}
	return nil
}
