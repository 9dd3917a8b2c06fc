// Package router is router-worker's service: a consumer group over the
// requests topics of both lanes that sends each request to the model backend
// configured for its model, writes the answer to the results topic (chunks
// while it streams, then exactly one terminal record), dead-letters what it
// cannot process, and commits a record's offset only after its results are
// in Kafka.
//
// Ordering and concurrency come from the key-ordered engine
// (internal/keyorder): one request per conversation in flight, its results
// written before the next one starts, many conversations at once up to the
// in-flight budgets, and each partition's low watermark committed with the
// finished work above it.
package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/keyorder"
	"github.com/switchboard-llm/switchboard/internal/status"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// Config configures a router. The zero value of every field but Topics and
// Backends is a working default.
type Config struct {
	// FetchMinBytes and FetchMaxWait batch fetches: the broker answers a
	// fetch once it has FetchMinBytes or FetchMaxWait has passed. Larger
	// values cost latency and save CPU per request. Defaults 1 byte, 5s
	// (answer as soon as anything arrives).
	FetchMinBytes int32
	FetchMaxWait  time.Duration
	// ProduceLinger is how long results wait to be batched. Default 5ms.
	ProduceLinger time.Duration
	// Kafka says how to reach the cluster.
	Kafka kafkaconf.Config
	// Topics names the topics (from topics.yaml). Required.
	Topics *topicspec.Spec
	// Group is the consumer group. Default "switchboard-router".
	Group string
	// InstanceID, when set, makes this member static (KIP-345): a restart
	// within SessionTimeout gets its partitions back at once, and a stop
	// does not leave the group (see keyorder.Config.InstanceID). Unique
	// within the group, stable across restarts (e.g. a StatefulSet pod's
	// name).
	InstanceID string
	// Routing is the content of the backends file: model servers, aliases,
	// fallbacks, tenant limits, breakers. At least one backend is required.
	Routing Routing
	// BackendsFile, when set, is where Routing came from: it is read again
	// when it changes (checked every ReloadInterval, default 1s; negative:
	// never) and when ReloadSignal delivers. A file that does not load is
	// logged and ignored; the running configuration stays.
	BackendsFile   string
	ReloadInterval time.Duration
	ReloadSignal   <-chan os.Signal
	// MaxAttempts bounds the tries at one request when the backend fails
	// with a retryable error. Default 3.
	MaxAttempts int
	// RetryBackoff is the first pause between attempts; it doubles each
	// time up to MaxRetryBackoff, with jitter (each pause is drawn from
	// [d/2, d]), and is never shorter than the backend's Retry-After.
	// Defaults 200ms and 10s.
	RetryBackoff, MaxRetryBackoff time.Duration
	// ChunkInterval and ChunkBytes coalesce streamed deltas: a chunk record
	// is written when either is reached. Defaults 50ms and 1 KiB.
	ChunkInterval time.Duration
	ChunkBytes    int
	// MaxInFlight bounds the requests in flight at once. Default 1024.
	MaxInFlight int
	// BatchMaxInFlight bounds the batch lane's requests in flight; the rest
	// of MaxInFlight is reserved for the interactive lane. Default 3/4 of
	// MaxInFlight.
	BatchMaxInFlight int
	// PartitionHighMark pauses fetching a partition when this many of its
	// records wait or run; it resumes at half. Default 1024.
	PartitionHighMark int
	// RevokeTimeout bounds how long a revoked partition's in-flight
	// requests may run before they are cancelled (and left for the next
	// owner). Default 10s.
	RevokeTimeout time.Duration
	// SessionTimeout is how long the group waits for a silent member (a
	// crashed worker, or a stopped static one) before giving its
	// partitions to others. Default 20s (see keyorder.Config).
	SessionTimeout time.Duration
	// GroupProtocol is the consumer group protocol: "classic" (the default:
	// JoinGroup/SyncGroup, cooperative-sticky assignment by the members)
	// or "consumer" (KIP-848, Kafka 4.0+: the broker assigns partitions,
	// incrementally; the session timeout is then the broker's
	// group.consumer.session.timeout.ms, not SessionTimeout).
	GroupProtocol string
	// RebalanceTimeout is how long a rebalance waits for members to
	// rejoin. Default RevokeTimeout + 20s.
	RebalanceTimeout time.Duration
	// ExactlyOnce commits terminal results and dead letters in Kafka
	// transactions together with the offsets (see docs/ARCHITECTURE.md);
	// streamed chunks stay at-least-once. CommitInterval defaults to 100ms
	// in this mode, since results become visible at commit.
	ExactlyOnce bool
	// TransactionalID names this worker's transactions; it must be unique
	// among running workers. Default: from InstanceID, else random.
	TransactionalID string
	// DedupeWindow is how long a requests partition remembers a request ID
	// (by record timestamp: an ID is forgotten once the partition's newest
	// record is this much younger than the record that carried it); a
	// repeat of a remembered ID at another offset is not sent to a model
	// but answered with a copy of the first answer (see dedupe.go,
	// reanswer.go). Default 10m; negative: repeats are processed again.
	DedupeWindow time.Duration
	// DedupeMaxIDs bounds the request IDs one partition remembers; the
	// oldest are forgotten first. Default 20,000 (about 3 MB a
	// partition).
	DedupeMaxIDs int
	// DedupeRebuildTimeout bounds each reading back from Kafka: of an
	// assigned partition's recent request IDs (the rebalance waits for
	// it; what it did not reach is not remembered), and of a repeat's
	// first answer (not found in time: the repeat is processed). Default
	// 5s.
	DedupeRebuildTimeout time.Duration
	// MemoryMaxMessages and MemoryMaxTokens bound what a memory request's
	// prompt takes from its conversation's history, counting the request's
	// own messages (tokens estimated at four bytes each): the oldest turns
	// are dropped first (see memory_trim.go), and a stored history is
	// trimmed to the same budget. Zero: default 64 messages, 8192 tokens;
	// negative: that bound is off.
	MemoryMaxMessages, MemoryMaxTokens int
	// MemoryRebuildTimeout bounds reading an assigned partition's
	// conversation histories back from the history topic (the rebalance
	// waits for it; a partition not read in time is read again by its
	// first memory request). Default 10s.
	MemoryRebuildTimeout time.Duration
	// CommitInterval is how often finished work is committed. After a
	// crash, work finished since the last commit runs again. Default 1s.
	CommitInterval time.Duration
	// ShutdownTimeout bounds the drain on stop. Default 30s.
	ShutdownTimeout time.Duration
	// ResultsEncoding is how result records are written: "protobuf" (the
	// default) or "json" (protojson with content-type application/json,
	// which kcat or any consumer reads without the schema). Readers decode
	// both by the header, so it can change on a running deployment.
	ResultsEncoding string
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry receives the service's metrics. Default: a new registry.
	Registry *prometheus.Registry
	// StatusInterval is how often the worker publishes its status record
	// to the status topic (internal/status; the console reads it). Default
	// status.DefaultInterval; negative: never.
	StatusInterval time.Duration
}

// Defaults returns the configuration New completes a Config with: every
// setting that has a default of its own. Settings derived from others
// (BatchMaxInFlight from MaxInFlight, CommitInterval from ExactlyOnce) stay
// zero, so that they follow what they derive from; the mains take their
// flag defaults from here.
func Defaults() Config {
	var c Config
	c.setDefaults()
	c.BatchMaxInFlight, c.CommitInterval = 0, 0
	c.Logger, c.Registry = nil, nil
	return c
}

func (c *Config) setDefaults() {
	if c.StatusInterval == 0 {
		c.StatusInterval = status.DefaultInterval
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
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = 10 * time.Second
	}
	if c.ReloadInterval == 0 {
		c.ReloadInterval = time.Second
	}
	if c.ChunkInterval == 0 {
		c.ChunkInterval = 50 * time.Millisecond
	}
	if c.ChunkBytes == 0 {
		c.ChunkBytes = 1024
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.CommitInterval == 0 && c.ExactlyOnce {
		c.CommitInterval = 100 * time.Millisecond
	}
	if c.FetchMinBytes == 0 {
		c.FetchMinBytes = 1
	}
	if c.FetchMaxWait == 0 {
		c.FetchMaxWait = 5 * time.Second
	}
	if c.ProduceLinger == 0 {
		c.ProduceLinger = 5 * time.Millisecond
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 20 * time.Second
	}
	if c.BatchMaxInFlight == 0 {
		c.BatchMaxInFlight = max(1, c.MaxInFlight*3/4)
	}
	if c.PartitionHighMark == 0 {
		c.PartitionHighMark = 1024
	}
	if c.RevokeTimeout == 0 {
		c.RevokeTimeout = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.ResultsEncoding == "" {
		c.ResultsEncoding = "protobuf"
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 10 * time.Minute
	}
	if c.DedupeMaxIDs == 0 {
		c.DedupeMaxIDs = 20000
	}
	if c.DedupeRebuildTimeout == 0 {
		c.DedupeRebuildTimeout = 5 * time.Second
	}
	if c.MemoryMaxMessages == 0 {
		c.MemoryMaxMessages = 64
	}
	if c.MemoryMaxTokens == 0 {
		c.MemoryMaxTokens = 8192
	}
	if c.MemoryRebuildTimeout == 0 {
		c.MemoryRebuildTimeout = 10 * time.Second
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
	if err := c.Routing.Validate(); err != nil {
		return fmt.Errorf("router: backends: %w", err)
	}
	if c.SessionTimeout < 0 || c.RebalanceTimeout < 0 || c.RevokeTimeout < 0 || c.ShutdownTimeout < 0 || c.DedupeRebuildTimeout < 0 || c.MemoryRebuildTimeout < 0 {
		return errors.New("router: timeouts must not be negative")
	}
	if c.MaxAttempts < 1 || c.PartitionHighMark < 2 || c.ChunkBytes < 1 || c.MaxInFlight < 1 || c.BatchMaxInFlight < 1 {
		return errors.New("router: max attempts, in-flight budgets, high mark and chunk bytes must be positive")
	}
	if c.DedupeMaxIDs < 1 {
		return errors.New("router: dedupe max IDs must be positive")
	}
	if _, err := envelope.ParseEncoding(c.ResultsEncoding); err != nil {
		return fmt.Errorf("router: results %w", err)
	}
	if c.GroupProtocol != "" && c.GroupProtocol != "classic" && c.GroupProtocol != "consumer" {
		return fmt.Errorf("router: group protocol %q: want classic or consumer", c.GroupProtocol)
	}
	return c.Kafka.Validate()
}

// Router consumes requests and produces results.
type Router struct {
	cfg      Config
	log      *slog.Logger
	engine   *keyorder.Engine
	client   *kgo.Client // the engine's client
	producer *kgo.Client // produces results: the engine's client, or in exactly-once mode a plain one for chunks
	eos      bool        // exactly-once mode
	maxBytes int32       // largest batch the results and dead-letter topics take
	bal      *balancer
	tenants  tenantLimiters
	topics   []string // the requests topics
	results  string
	resEnc   envelope.Encoding // of result records
	dlq      string
	metrics  *metrics

	// seen holds each assigned requests partition's seen set (dedupe.go):
	// created and dropped by the engine's assignment callbacks, read by
	// the handlers. seenMu guards the map, each set guards itself.
	seenMu sync.Mutex
	seen   map[partitionOf]*seenSet

	// inflight and calls feed the status record (status.go).
	inflight status.Tracker
	calls    *status.Window
	mem      *memory // conversations with memory (memory.go)
}

// New validates cfg, builds the backend clients and the Kafka client. It
// does not wait for the cluster, and joins the group only in Run, after
// the listener is bound.
func New(cfg Config) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Kafka = cfg.Kafka.Instrument("router", cfg.Registry)
	r := &Router{
		mem:     newMemory(&cfg),
		cfg:     cfg,
		log:     cfg.Logger,
		results: cfg.Topics.Name(topicspec.Results),
		dlq:     cfg.Topics.Name(topicspec.DeadLetter),
		metrics: newMetrics(cfg.Registry),
		seen:    map[partitionOf]*seenSet{},
		calls:   status.NewWindow(latencySpan),
	}
	bal, err := newBalancer(cfg.Routing, r.systemChanged)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	r.bal = bal
	cfg.Registry.MustRegister(newPoolCollector(bal))
	batch := cfg.Topics.Name(topicspec.RequestsBatch)
	r.topics = []string{cfg.Topics.Name(topicspec.RequestsInteractive), batch}
	r.eos = cfg.ExactlyOnce
	r.resEnc, _ = envelope.ParseEncoding(cfg.ResultsEncoding) // Validate checked it
	r.maxBytes = cfg.Topics.MaxMessageBytes(topicspec.Results, topicspec.DeadLetter)
	txnID := ""
	if r.eos {
		txnID = cfg.TransactionalID
		if txnID == "" && cfg.InstanceID != "" {
			txnID = "switchboard-router-" + cfg.InstanceID
		}
		if txnID == "" {
			txnID = "switchboard-router-" + uuid.NewString()
		}
	}
	groupOpts := []kgo.Opt{kgo.FetchMinBytes(cfg.FetchMinBytes), kgo.FetchMaxWait(cfg.FetchMaxWait)}
	if cfg.GroupProtocol == "consumer" {
		groupOpts = append(groupOpts, kgo.ServerSideBalancer())
	}
	engine, err := keyorder.New(keyorder.Config{
		TransactionalID:  txnID,
		Group:            cfg.Group,
		InstanceID:       cfg.InstanceID,
		SessionTimeout:   cfg.SessionTimeout,
		RebalanceTimeout: cfg.RebalanceTimeout,
		Topics:           r.topics,
		TopicLimits:      map[string]int{batch: cfg.BatchMaxInFlight},
		MaxInFlight:      cfg.MaxInFlight,
		HighMark:         cfg.PartitionHighMark,
		RevokeTimeout:    cfg.RevokeTimeout,
		ShutdownTimeout:  cfg.ShutdownTimeout,
		CommitInterval:   cfg.CommitInterval,
		RetryBackoff:     cfg.RetryBackoff,
		Handler:          r.process,
		OnAssigned:       r.assigned,
		OnReleased:       r.released,
		ClientOpts: append(append(cfg.Kafka.Opts(cfg.Logger), producerOpts(cfg.Topics, cfg.ProduceLinger)...),
			groupOpts...),
		MetricsPrefix: "switchboard_router",
		Registry:      cfg.Registry,
		Logger:        cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	r.engine = engine
	r.client = engine.Client()
	r.producer = r.client
	cfg.Registry.MustRegister(kafkaconf.NewLagCollector(kadm.NewClient(r.client), "router", cfg.Group))
	if r.eos {
		// Chunks are produced as they stream, outside any transaction.
		if r.producer, err = kgo.NewClient(append(cfg.Kafka.Opts(cfg.Logger), producerOpts(cfg.Topics, cfg.ProduceLinger)...)...); err != nil {
			r.client.Close()
			return nil, fmt.Errorf("router: chunk producer: %w", err)
		}
	}
	return r, nil
}

// Run binds the listener first (a taken address fails here, before the
// group is joined), then joins the group and consumes until ctx is done,
// then lets in-flight requests finish (up to ShutdownTimeout), commits what
// is finished and leaves the group (within the engine's LeaveTimeout).
func (r *Router) Run(ctx context.Context) error {
	r.log.Info("router consuming", "group", r.cfg.Group, "backends", len(r.cfg.Routing.Backends),
		"max_in_flight", r.cfg.MaxInFlight, "batch_max_in_flight", r.cfg.BatchMaxInFlight)
	// The watchers (backends file, system breaker) stop with the engine,
	// also when it fails before ctx is done.
	wctx, stopWatch := context.WithCancel(ctx)
	var watchers errgroup.Group
	watchers.Go(func() error { r.watch(wctx); return nil })
	watchers.Go(func() error { r.bal.watchSystem(wctx, 250*time.Millisecond); return nil })
	watchers.Go(func() error { r.publishStatus(wctx); return nil })
	err := r.engine.Run(ctx)
	stopWatch()
	_ = watchers.Wait() // they return nil
	if r.producer != r.client {
		r.producer.Close()
	}
	return err
}

// Close releases a router that never ran (Run releases its own).
func (r *Router) Close() {
	if r.producer != r.client {
		r.producer.Close()
	}
	r.engine.Close()
}

// producerOpts sizes the producer for the topics it writes: a batch may be
// as large as the smallest of the results, dead-letter and history topics'
// limits. History records keep the partition they are given.
func producerOpts(spec *topicspec.Spec, linger time.Duration) []kgo.Opt {
	opts := []kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(linger),
		kgo.RecordPartitioner(historyPartitioner(spec.Name(topicspec.History)))}
	if n := spec.MaxMessageBytes(topicspec.Results, topicspec.DeadLetter, topicspec.History); n > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(n))
	}
	return opts
}

// Ready is the admin listener's /readyz: the worker is ready once Kafka
// answers and it has joined its group, whether or not the group gave it
// partitions (a worker beyond the partition count holds none and is ready
// to take over). The detail names the partitions held. So a restarted
// worker is not ready while it waits for a rebalance, and a rolling restart
// that waits for readiness restarts the next worker only after this one has
// its partitions.
func (r *Router) Ready(req *http.Request) (string, error) {
	st := r.engine.Status()
	ctx, cancel := context.WithTimeout(req.Context(), time.Second)
	defer cancel()
	if err := r.client.Ping(ctx); err != nil {
		return st.String(), fmt.Errorf("kafka unreachable: %w", err)
	}
	if !st.Joined {
		return st.String(), errors.New("not a member of the group yet (joining or rebalancing)")
	}
	return st.String(), nil
}
