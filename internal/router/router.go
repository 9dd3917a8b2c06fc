// Package router is router-worker's service: a consumer group over the
// requests topics of both lanes that sends each request to the model backend
// configured for its model, writes the answer to the results topic (chunks
// while it streams, then exactly one terminal record), dead-letters what it
// cannot process, and commits a record's offset only after its results are
// in Kafka.
//
// Ordering: each assigned partition has one worker goroutine that handles
// its records one after another, so a conversation (one key, one partition)
// never has two requests in flight and its results come out in log order.
// (A key-ordered engine that runs different conversations of one partition
// concurrently replaces this; see docs/ARCHITECTURE.md.)
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/httpserve"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/llm"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// Config configures a router. The zero value of every field but Topics and
// Backends is a working default.
type Config struct {
	// Addr is the listen address of /metrics, /healthz and /readyz.
	// Default 127.0.0.1:8082.
	Addr string
	// Kafka says how to reach the cluster.
	Kafka kafkaconf.Config
	// Topics names the topics (from topics.yaml). Required.
	Topics *topicspec.Spec
	// Group is the consumer group. Default "switchboard-router".
	Group string
	// InstanceID, when set, makes this member static (KIP-345): a restart
	// within the session timeout keeps its partitions without a rebalance.
	InstanceID string
	// Backends are the model servers. Required.
	Backends []Backend
	// MaxAttempts bounds the tries at one request when the backend fails
	// with a retryable error. Default 3.
	MaxAttempts int
	// RetryBackoff is the first pause between attempts; it doubles each
	// time. Default 200ms.
	RetryBackoff time.Duration
	// ChunkInterval and ChunkBytes coalesce streamed deltas: a chunk record
	// is written when either is reached. Defaults 50ms and 1 KiB.
	ChunkInterval time.Duration
	ChunkBytes    int
	// QueueHighMark pauses fetching a partition when this many of its
	// records wait; fetching resumes when half are done. Default 512.
	QueueHighMark int
	// RevokeTimeout bounds how long a revoked partition's current request
	// may run before it is cancelled (and left for the next owner).
	// Default 10s.
	RevokeTimeout time.Duration
	// ShutdownTimeout bounds the drain on stop. Default 30s.
	ShutdownTimeout time.Duration
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry receives the service's metrics. Default: a new registry.
	Registry *prometheus.Registry
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8082"
	}
	if c.Group == "" {
		c.Group = "switchboard-router"
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 200 * time.Millisecond
	}
	if c.ChunkInterval == 0 {
		c.ChunkInterval = 50 * time.Millisecond
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = 1024
	}
	if c.QueueHighMark == 0 {
		c.QueueHighMark = 512
	}
	if c.RevokeTimeout == 0 {
		c.RevokeTimeout = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
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
		return errors.New("router: topics spec is required")
	}
	if err := validateBackends(c.Backends); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	if c.MaxAttempts < 1 || c.QueueHighMark < 2 || c.ChunkBytes < 1 {
		return errors.New("router: max attempts, queue high mark and chunk bytes must be positive")
	}
	return c.Kafka.Validate()
}

// Router consumes requests and produces results.
type Router struct {
	cfg     Config
	log     *slog.Logger
	client  *kgo.Client
	models  map[string]*backendClient // model name -> backend
	results string
	dlq     string
	metrics *metrics
	mu      sync.Mutex // guards workers; never held while waiting for one
	workers map[topicPartition]*worker
	// base is the context workers run in: Run's context without its
	// cancellation, so a stop drains work instead of cutting it.
	base context.Context
}

type backendClient struct {
	name   string
	client *llm.Client
}

type topicPartition struct {
	topic     string
	partition int32
}

// New validates cfg, builds the backend clients and the Kafka client. It
// does not wait for the cluster.
func New(cfg Config) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Router{
		cfg:     cfg,
		log:     cfg.Logger,
		models:  map[string]*backendClient{},
		results: cfg.Topics.Name(topicspec.Results),
		dlq:     cfg.Topics.Name(topicspec.DeadLetter),
		metrics: newMetrics(cfg.Registry),
		workers: map[topicPartition]*worker{},
	}
	for _, b := range cfg.Backends {
		lc, err := llm.New(llm.Config{
			BaseURL:           b.BaseURL,
			APIKey:            os.Getenv(b.APIKeyEnv),
			MaxConns:          b.MaxConcurrency,
			TotalTimeout:      b.Timeout,
			FirstTokenTimeout: b.FirstTokenTimeout,
		})
		if err != nil {
			return nil, fmt.Errorf("router: backend %s: %w", b.Name, err)
		}
		bc := &backendClient{name: b.Name, client: lc}
		for _, m := range b.Models {
			if _, dup := r.models[m]; !dup {
				r.models[m] = bc
			}
		}
	}
	opts := append(cfg.Kafka.Opts(cfg.Logger),
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topics.Name(topicspec.RequestsInteractive), cfg.Topics.Name(topicspec.RequestsBatch)),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		kgo.OnPartitionsAssigned(r.assigned),
		kgo.OnPartitionsRevoked(r.revoked),
		kgo.OnPartitionsLost(r.lost),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("router: kafka client: %w", err)
	}
	r.client = cl
	return r, nil
}

// Run consumes until ctx is done, then stops taking records, lets each
// partition finish its current request (up to ShutdownTimeout), commits
// what is finished and leaves the group.
func (r *Router) Run(ctx context.Context) error {
	r.base = context.WithoutCancel(ctx)
	ln, err := net.Listen("tcp", r.cfg.Addr)
	if err != nil {
		r.client.Close()
		return fmt.Errorf("router: listen: %w", err)
	}
	mux := http.NewServeMux()
	telemetry.Mount(mux, r.cfg.Registry, r.ready)
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	httpDone := make(chan error, 1)
	go func() { httpDone <- httpserve.Run(httpCtx, ln, mux, time.Second, r.log) }()

	r.log.Info("router consuming", "group", r.cfg.Group, "backends", len(r.cfg.Backends))
	for {
		fetches := r.client.PollRecords(ctx, 1024)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(topic string, p int32, err error) {
			r.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		fetches.EachPartition(r.dispatch)
	}

	// Drain: stop every worker after its current request, commit, leave.
	r.mu.Lock()
	all := make(map[string][]int32)
	for tp := range r.workers {
		all[tp.topic] = append(all[tp.topic], tp.partition)
	}
	r.mu.Unlock()
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	r.stopWorkers(dctx, all, false)
	if err := r.client.CommitMarkedOffsets(dctx); err != nil {
		r.log.Warn("final commit failed", "err", err)
	}
	r.client.Close() // leaves the group
	stopHTTP()
	return <-httpDone
}

func (r *Router) ready(req *http.Request) error {
	ctx, cancel := context.WithTimeout(req.Context(), time.Second)
	defer cancel()
	return r.client.Ping(ctx)
}

// dispatch queues a fetched partition's records on its worker.
func (r *Router) dispatch(p kgo.FetchTopicPartition) {
	if len(p.Records) == 0 {
		return
	}
	r.mu.Lock()
	w := r.workers[topicPartition{p.Topic, p.Partition}]
	r.mu.Unlock()
	if w == nil {
		return // revoked while fetched: the next owner reads them again
	}
	w.enqueue(p.Records)
}

func (r *Router) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for topic, parts := range assigned {
		for _, p := range parts {
			tp := topicPartition{topic, p}
			if r.workers[tp] != nil {
				continue
			}
			w := newWorker(r, tp)
			r.workers[tp] = w
			go w.run()
		}
	}
	r.metrics.rebalances.WithLabelValues("assigned").Inc()
	r.log.Info("partitions assigned", "partitions", assigned)
}

func (r *Router) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	r.metrics.rebalances.WithLabelValues("revoked").Inc()
	r.log.Info("partitions revoked", "partitions", revoked)
	wctx, cancel := context.WithTimeout(ctx, r.cfg.RevokeTimeout)
	defer cancel()
	r.stopWorkers(wctx, revoked, false)
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		r.log.Warn("commit on revoke failed", "err", err)
	}
}

func (r *Router) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.metrics.rebalances.WithLabelValues("lost").Inc()
	r.log.Warn("partitions lost", "partitions", lost)
	// Lost work is dropped at once, uncommitted: another member owns it now.
	r.stopWorkers(r.base, lost, true)
}

// stopWorkers stops the workers of parts: each finishes its current request
// unless ctx ends first (or now is set), in which case the request is
// cancelled. It returns once every one has exited, so a partition handed
// back to this member never has two workers.
func (r *Router) stopWorkers(ctx context.Context, parts map[string][]int32, now bool) {
	var stopped []*worker
	r.mu.Lock()
	for topic, ps := range parts {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if w := r.workers[tp]; w != nil {
				delete(r.workers, tp)
				close(w.quit)
				if now {
					w.cancel()
				}
				stopped = append(stopped, w)
			}
		}
	}
	r.mu.Unlock()
	for _, w := range stopped {
		select {
		case <-w.done:
		case <-ctx.Done():
			w.cancel()
			<-w.done
		}
	}
}
