// Package console is the live console page, served by egress on its admin
// listener at /console: the pipeline at a glance, updated every second
// over Server-Sent Events. The services never call each other, so
// everything the page shows comes from Kafka:
//
//   - per topic and partition, the end offset and its growth (throughput),
//     and each consumer group's lag (kadm ListEndOffsets and Lag, sampled
//     every Interval);
//   - the router group's members and their partitions (kadm Lag describes
//     the group);
//   - requests per second and their p99 latency, from the terminal records
//     of the results topic (their timings), one point per second;
//   - the latest dead letters with their reasons (the dead-letter topic's
//     tail);
//   - what only a service knows (router-workers' backends, breakers,
//     latency and in-flight conversations; ingress's admission state), from
//     the status records each instance publishes (internal/status).
//
// The page's files are embedded (static/): plain HTML, CSS and JavaScript,
// no CDN, no build step. docs/OPERATIONS.md explains each panel.
package console

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/status"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// Config configures a console. Topics is required; the zero value of every
// other field is a working default.
type Config struct {
	// Kafka says how to reach the cluster.
	Kafka kafkaconf.Config
	// Topics names the topics (from topics.yaml).
	Topics *topicspec.Spec
	// Groups are the consumer groups whose lag is shown; the first one's
	// members are the router-workers. Default: "switchboard-router".
	Groups []string
	// Interval is how often offsets and lag are sampled and the page is
	// updated. Default 1s.
	Interval time.Duration
	// DeadLetters is how many recent dead letters are kept. Default 50.
	DeadLetters int
	// Tail is how many records of each results and dead-letter partition
	// are read back at start (for the chart and the dead letters shown
	// before new ones arrive). Default 50.
	Tail int
	// MaxStreams bounds the pages open at once (event streams); more get
	// 503. Default 16.
	MaxStreams int
	// Logger receives the console's warnings. Default slog.Default().
	Logger *slog.Logger
	// Registry, when set, receives the console's metrics.
	Registry prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if len(c.Groups) == 0 {
		c.Groups = []string{"switchboard-router"}
	}
	c.Interval = cmp.Or(c.Interval, time.Second)
	c.DeadLetters = cmp.Or(c.DeadLetters, 50)
	c.Tail = cmp.Or(c.Tail, 50)
	c.MaxStreams = cmp.Or(c.MaxStreams, 16)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Console gathers the page's data and serves the page.
type Console struct {
	cfg     Config
	log     *slog.Logger
	topics  []string // full names of the topics shown
	results string
	dlq     string
	status  string // "" when the spec has no status topic
	streams chan struct{}
	errs    prometheus.Counter

	mu        sync.Mutex
	offsets   map[string]map[int32]int64 // latest end offsets
	rates     map[string]map[int32]float64
	sampledAt time.Time
	groups    []Group
	series    *series
	dead      []DeadLetter // newest last, at most cfg.DeadLetters
	deadSeen  int64
	instances map[string]*status.Record
	problems  map[string]string // gathering problems, by source
}

// New returns a console for cfg. It does not reach Kafka before Run.
func New(cfg Config) (*Console, error) {
	if cfg.Topics == nil {
		return nil, errors.New("console: topics spec is required")
	}
	cfg.setDefaults()
	c := &Console{cfg: cfg, log: cfg.Logger, results: cfg.Topics.Name(topicspec.Results),
		dlq: cfg.Topics.Name(topicspec.DeadLetter), streams: make(chan struct{}, cfg.MaxStreams),
		offsets: map[string]map[int32]int64{}, rates: map[string]map[int32]float64{},
		series: newSeries(120), instances: map[string]*status.Record{}, problems: map[string]string{},
		errs: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_egress_console_read_errors_total",
			Help: "Errors of the console's reads from Kafka (offsets, lag, results, dead letters, status records)."})}
	for _, t := range cfg.Topics.Topics {
		c.topics = append(c.topics, cfg.Topics.Name(t.Name))
	}
	if _, ok := cfg.Topics.Topic(topicspec.Status); ok {
		c.status = cfg.Topics.Name(topicspec.Status)
	}
	if cfg.Registry != nil {
		if err := cfg.Registry.Register(c.errs); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run gathers until ctx is done: it samples offsets and lag every
// Interval, and reads the results, dead-letter and status topics as they
// grow. Errors reading Kafka are shown on the page and retried; Run
// returns nil when ctx is done, or an error when a client cannot be made.
func (c *Console) Run(ctx context.Context) error {
	opts := c.cfg.Kafka.Opts(c.log)
	adminCl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer adminCl.Close()
	// The tails: the newest Tail records of each results and dead-letter
	// partition, then what arrives.
	tail, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(c.results, c.dlq),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd().Relative(-int64(c.cfg.Tail))))...)
	if err != nil {
		return err
	}
	defer tail.Close()
	var g errgroup.Group
	g.Go(func() error { c.sample(ctx, kadm.NewClient(adminCl)); return nil })
	g.Go(func() error { c.readTail(ctx, tail); return nil })
	if c.status != "" {
		st, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(c.status),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
		if err != nil {
			return err
		}
		defer st.Close()
		g.Go(func() error { c.readStatus(ctx, st); return nil })
	}
	return g.Wait()
}

// problem records (or, with err nil, clears) a gathering problem of
// source, shown on the page.
func (c *Console) problem(source string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.problems, source)
		return
	}
	if _, had := c.problems[source]; !had {
		c.log.Warn("console: reading Kafka", "source", source, "err", err)
	}
	c.problems[source] = err.Error()
	c.errs.Inc()
}
