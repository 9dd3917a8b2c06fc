// Package keyorder is the key-ordered consumer engine at the heart of
// router-worker (and, later, egress webhooks): it consumes a consumer
// group's partitions and runs a handler on every record so that
//
//   - records with the same key (one conversation) run one at a time, in
//     log order;
//   - records with different keys, even in one partition, run concurrently,
//     up to a global in-flight budget and a budget per topic (lane), so
//     a flood on one lane cannot take the capacity reserved for another;
//   - a partition commits its low watermark (the lowest unfinished offset),
//     with the finished offsets above it encoded in the commit metadata so
//     the next owner skips work already done;
//   - memory stays bounded: a partition with too many records waiting is
//     paused until its backlog drains.
//
// Partition-sequential processing is capped at partitions ÷ latency
// (12 partitions at 200 ms is 60 records/s); this engine is capped by the
// in-flight budget ÷ latency instead.
//
// # Contract
//
// The Handler is called for every record at least once. It returns nil once
// the record's work is complete (for the router: its results are
// acknowledged by Kafka); only then can the record's offset be committed. An
// error means the work could not be completed: the engine calls the handler
// again for the same record after a backoff, in place, so the record's key
// waits and the order holds. The handler must return promptly once its
// context is cancelled (the partition was revoked or lost, or the engine is
// stopping); the record is then left for the partition's next owner. A
// handler whose record must wait for something outside the engine returns
// Later: the record gives its in-flight place back and is handed over
// again after the wait, still first of its key.
//
// # Concurrency
//
// One mutex (Engine.mu) guards all scheduling state: partitions, per-key
// queues, lanes and counters. The poll loop, the rebalance callbacks, the
// commit loop and the handler goroutines take it briefly and never hold it
// while waiting for anything. Each in-flight record has one goroutine,
// tracked by Engine.wg, which Run waits for before it returns.
package keyorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// minTxnTimeout is the least transaction timeout of exactly-once mode
// (tests that wait out an abandoned transaction lower it).
var minTxnTimeout = 10 * time.Second

// Handler processes one record; see the package documentation for its
// contract.
type Handler func(ctx context.Context, rec *kgo.Record) error

// Config configures an Engine. The zero value of every field except Group,
// Topics, Handler and ClientOpts is a working default.
type Config struct {
	// Group is the consumer group. Required.
	Group string
	// InstanceID, when set, makes the member static (KIP-345): a member
	// that restarts with the same ID within SessionTimeout gets its
	// partitions back at once, without waiting for its old session to
	// expire; and a static member does not leave the group when it stops,
	// so its partitions wait for it (up to SessionTimeout) instead of
	// moving twice during a rolling restart. It must be unique in the
	// group.
	InstanceID string
	// SessionTimeout is how long the group waits for a silent member (a
	// crashed process, or a stopped static one) before its partitions go
	// to others. Default 20s: a crashed dynamic member's partitions stall
	// at most that long, and a static member restarting within it keeps
	// them. Kafka bounds it with group.min/max.session.timeout.ms
	// (6s..30m by default).
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the group waits in a rebalance for its
	// members to rejoin; a member that has not rejoined by then is dropped.
	// It must cover the revoke callback: RevokeTimeout for in-flight work
	// plus a commit. Default RevokeTimeout + 20s (30s with the defaults).
	RebalanceTimeout time.Duration
	// LeaveTimeout bounds leaving the group when Run stops. Default 5s.
	LeaveTimeout time.Duration
	// Topics are consumed. Required.
	Topics []string
	// TopicLimits bounds the records of one topic in flight at once; a topic
	// without an entry is bounded by MaxInFlight only. Giving the batch lane
	// a limit below MaxInFlight reserves the rest for the interactive lane.
	TopicLimits map[string]int
	// MaxInFlight bounds the records in flight at once across all topics.
	// Default 1024.
	MaxInFlight int
	// HighMark pauses fetching a partition when this many of its records are
	// waiting or in flight; LowMark (default HighMark/2) resumes it.
	// Default 1024.
	HighMark, LowMark int
	// MetadataLimit bounds the commit metadata of one partition, in bytes.
	// Kafka's default offset.metadata.max.bytes is 4096. Default 3584.
	MetadataLimit int
	// CommitInterval is how often finished work is committed. Default 1s.
	CommitInterval time.Duration
	// RevokeTimeout bounds how long a revoked partition's in-flight records
	// may run before they are cancelled. Default 10s.
	RevokeTimeout time.Duration
	// ShutdownTimeout bounds the drain when Run's context ends. Default 30s.
	ShutdownTimeout time.Duration
	// RetryBackoff is the first wait before a failed handler call is
	// retried; it doubles up to MaxRetryBackoff. Defaults 100ms and 10s.
	RetryBackoff, MaxRetryBackoff time.Duration
	// Handler processes records. Required.
	Handler Handler
	// OnAssigned, when set, is called with the partitions newly assigned
	// to this member and their committed offsets (-1: none), after the
	// engine has taken them and before any of their records reach the
	// Handler (franz-go fetches a partition only once the assignment
	// callback returns). It runs inside that callback, so the group's
	// rebalance waits for it: it must be bounded, well within
	// RebalanceTimeout. ctx is the client's (cancelled only on close).
	OnAssigned func(ctx context.Context, assigned map[string]map[int32]int64)
	// OnReleased, when set, is called with partitions this member no
	// longer owns (revoked, lost, or released at shutdown), once no
	// Handler call of theirs runs any more.
	OnReleased func(released map[string][]int32)
	// TransactionalID turns on exactly-once mode (see Stage): output and
	// offsets are committed together in Kafka transactions under this ID,
	// which must be unique to the process. Empty: at-least-once.
	TransactionalID string
	// ClientOpts reach the cluster (seed brokers, client ID, logger, TLS).
	// The engine adds the group, topic, balancer and callback options (and
	// the session and rebalance timeouts, which ClientOpts may override).
	// The client may also be used to produce (see Engine.Client).
	ClientOpts []kgo.Opt
	// MetricsPrefix starts every metric name, e.g. "switchboard_router".
	// Default "switchboard_keyorder".
	MetricsPrefix string
	// Registry receives the metrics. Default: none are registered.
	Registry prometheus.Registerer
	// Logger receives the engine's logs. Default slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 1024
	}
	if c.HighMark == 0 {
		c.HighMark = 1024
	}
	if c.LowMark == 0 {
		c.LowMark = c.HighMark / 2
	}
	if c.MetadataLimit == 0 {
		c.MetadataLimit = 3584
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = time.Second
	}
	if c.RevokeTimeout == 0 {
		c.RevokeTimeout = 10 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 20 * time.Second
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = c.RevokeTimeout + 20*time.Second
	}
	if c.LeaveTimeout == 0 {
		c.LeaveTimeout = 5 * time.Second
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = 100 * time.Millisecond
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = 10 * time.Second
	}
	if c.MetricsPrefix == "" {
		c.MetricsPrefix = "switchboard_keyorder"
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	switch {
	case c.Group == "":
		return errors.New("keyorder: group is required")
	case len(c.Topics) == 0:
		return errors.New("keyorder: at least one topic is required")
	case c.Handler == nil:
		return errors.New("keyorder: handler is required")
	case c.MaxInFlight < 1 || c.HighMark < 1 || c.LowMark < 0 || c.LowMark >= c.HighMark:
		return errors.New("keyorder: max in flight and high mark must be positive, and low mark below high mark")
	case c.SessionTimeout < 0 || c.RebalanceTimeout < 0 || c.LeaveTimeout < 0 || c.RevokeTimeout < 0 || c.ShutdownTimeout < 0:
		return errors.New("keyorder: timeouts must not be negative")
	case c.MetadataLimit < 64 || c.MetadataLimit > 4096:
		return errors.New("keyorder: metadata limit must be between 64 and 4096 bytes (Kafka's offset.metadata.max.bytes default)")
	}
	for t, n := range c.TopicLimits {
		if n < 1 {
			return fmt.Errorf("keyorder: topic %s: in-flight limit must be positive", t)
		}
	}
	return nil
}

// Engine consumes a group's partitions and runs the handler in key order.
type Engine struct {
	cfg Config
	log *slog.Logger
	cl  *kgo.Client
	adm *kadm.Client
	m   *metrics

	// base is the parent of every handler context: Run's context without
	// its cancellation, so that a stop drains instead of cutting.
	base context.Context
	wg   sync.WaitGroup // handler goroutines
	// running is closed when Run starts. The client joins the group only
	// then (Run adds the topics: a client with a group and no topics does
	// not join), so a process that fails before Run, e.g. to listen, never
	// joins and never holds partitions. The rebalance callbacks still wait
	// on it before touching the engine (base and adm are set by then).
	running chan struct{}

	txn        *txnState     // exactly-once mode only
	txnTimeout time.Duration // exactly-once mode only

	// commitMu serialises commits (see commit). Lock order: commitMu, then mu.
	commitMu sync.Mutex

	// fatal is set when exactly-once mode cannot go on safely (the outcome
	// of a transaction stays unknown, or the producer failed for good):
	// Run stops without committing anything more and returns it, and the
	// partitions' next owners start from the committed state, which is
	// consistent by construction. stopRun ends Run's poll loop.
	fatal   atomic.Pointer[error]
	stopRun context.CancelFunc

	mu        sync.Mutex // guards everything below
	joined    bool       // see Status.Joined
	parts     map[topicPartition]*partition
	lanes     map[string]*lane // by topic
	laneOrder []*lane
	rr        int // next lane to look at first
	inflight  int
	// resumes are the paused partitions due to be resumed by the poll
	// loop, and wake ends the poll under way so that it does so at once
	// (resume.go).
	resumes []*partition
	wake    context.CancelFunc
}

type topicPartition struct {
	topic     string
	partition int32
}

// New validates cfg and creates the group client. It does not join the
// group: nothing is joined or consumed until Run.
func New(cfg Config) (*Engine, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{
		cfg:     cfg,
		log:     cfg.Logger,
		m:       newMetrics(cfg.MetricsPrefix, cfg.Registry),
		parts:   map[topicPartition]*partition{},
		lanes:   map[string]*lane{},
		running: make(chan struct{}),
	}
	for _, t := range cfg.Topics {
		limit, ok := cfg.TopicLimits[t]
		if !ok || limit > cfg.MaxInFlight {
			limit = cfg.MaxInFlight
		}
		l := &lane{topic: t, max: limit}
		e.lanes[t] = l
		e.laneOrder = append(e.laneOrder, l)
	}
	opts := append([]kgo.Opt{
		kgo.SessionTimeout(cfg.SessionTimeout),
		kgo.RebalanceTimeout(cfg.RebalanceTimeout),
	}, cfg.ClientOpts...)
	opts = append(opts,
		// No ConsumeTopics: Run adds them, which starts the join.
		kgo.ConsumerGroup(cfg.Group),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		// Records polled before a rebalance must be queued before it
		// runs: otherwise a stale batch could reach a partition's new
		// state and its gap look like finished work.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(e.assigned),
		kgo.OnPartitionsRevoked(e.revoked),
		kgo.OnPartitionsLost(e.lost),
	)
	if cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.InstanceID))
	}
	if cfg.TransactionalID != "" {
		e.txn = &txnState{}
		e.txnTimeout = max(minTxnTimeout, 4*cfg.CommitInterval)
		opts = append(opts,
			kgo.TransactionalID(cfg.TransactionalID),
			kgo.TransactionTimeout(e.txnTimeout),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("keyorder: kafka client: %w", err)
	}
	e.cl = cl
	e.adm = kadm.NewClient(cl)
	return e, nil
}

// Client returns the engine's Kafka client, for producing. It is closed
// when Run returns.
func (e *Engine) Client() *kgo.Client { return e.cl }

// Close releases the client of an engine whose Run is never called (a
// process that fails to start); Run closes the client itself, so do not
// call both.
func (e *Engine) Close() { e.cl.Close() }

// Run joins the group and consumes until ctx is done. Then it stops
// fetching, lets in-flight records finish (up to ShutdownTimeout, after
// which they are cancelled), commits what is finished, leaves the group
// (within LeaveTimeout) and returns once every handler call has returned.
func (e *Engine) Run(ctx context.Context) error {
	e.base = context.WithoutCancel(ctx)
	ctx, e.stopRun = context.WithCancel(ctx)
	defer e.stopRun()
	close(e.running)
	e.join()
	stopCommits, commitsDone := make(chan struct{}), make(chan struct{})
	go func() { //nolint:contextcheck // commits run on the engine's base context, never a caller's: one cut off half-way leaves its outcome unknown (commitTimeout)
		defer close(commitsDone)
		e.commitLoop(stopCommits)
	}()

	for {
		pollCtx := e.pollContext(ctx)
		fetches := e.cl.PollRecords(pollCtx, 4096)
		woken := e.endPoll()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if woken && topic == "" && errors.Is(err, context.Canceled) {
				return // resumeSoon ended the poll
			}
			e.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				e.add(p.Topic, p.Partition, p.Records)
			}
		})
		// Before AllowRebalance: no rebalance runs while the poll's
		// records are taken, nor while partitions are resumed.
		e.resumeDuePartitions()
		e.cl.AllowRebalance()
	}
	e.cl.AllowRebalance()

	close(stopCommits)
	<-commitsDone
	e.mu.Lock()
	all := map[string][]int32{}
	for tp := range e.parts {
		all[tp.topic] = append(all[tp.topic], tp.partition)
	}
	e.mu.Unlock()
	e.release(all, e.cfg.ShutdownTimeout, e.fatal.Load() == nil) //nolint:contextcheck // commits run on the engine's base context, never a caller's: one cut off half-way leaves its outcome unknown (commitTimeout)
	e.leave()                                                    //nolint:contextcheck // leaving runs on the engine's base context, bounded by LeaveTimeout: the caller's is already done at shutdown
	e.wg.Wait()
	if err := e.fatal.Load(); err != nil {
		return *err
	}
	return nil
}

// join starts joining the group: a group client learns its topics only
// here, and joins once it has them.
func (e *Engine) join() { e.cl.AddConsumeTopics(e.cfg.Topics...) }

// leave leaves the group, bounded by LeaveTimeout, and closes the client.
// A static member sends no LeaveGroup (franz-go keeps it in the group so a
// restart gets its partitions back); a dynamic one does, and its partitions
// move at once. Close waits for a leave already under way, which the
// bounded context ends.
func (e *Engine) leave() {
	ctx, cancel := context.WithTimeout(e.base, e.cfg.LeaveTimeout)
	defer cancel()
	if err := e.cl.LeaveGroupContext(ctx); err != nil {
		e.log.Warn("leaving the group failed; the group drops this member after the session timeout",
			"group", e.cfg.Group, "err", err)
	}
	e.mu.Lock()
	e.joined = false
	e.mu.Unlock()
	e.cl.Close()
}

// fail stops the engine for good (see Engine.fatal).
func (e *Engine) fail(err error) {
	err = fmt.Errorf("keyorder: exactly-once mode cannot go on: %w", err)
	if e.fatal.CompareAndSwap(nil, &err) {
		e.log.Error("stopping without committing more; the partitions' next owners redo uncommitted work", "err", err)
		e.stopRun()
	}
}
