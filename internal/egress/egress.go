// Package egress is the pipeline's way out: every egress instance reads all
// partitions of the results topic and forwards each result to the clients
// subscribed to its conversation on that instance, as Server-Sent Events
// (sse.go), WebSocket messages (ws.go) or a gRPC server stream (grpc.go);
// and, optionally, runs webhook delivery (package webhook), which POSTs
// terminal results through a consumer group, so each is delivered by one
// instance.
//
// A subscriber first gets the conversation's recent past replayed (from its
// cursor, or from ReplayWindow ago), then the live feed, with no gap and no
// overlap between the two (see hub.subscribe). The replay comes from an
// in-memory index of the last ReplayWindow of results (recent.go, bounded
// by RecentBytes) that the live reader fills; only a range the index does
// not cover (older, evicted, or before this instance started) is read from
// Kafka (replay.go) by a bounded pool of readers shared by every such
// stream, one partition per reader at a time (replaypool.go). Per subscriber,
// duplicate chunks, chunks of superseded attempts and runs, and repeated
// terminal results are dropped (dedupe.go), so a client sees each answer
// once and in order. The transports share one stream loop (stream.go) and
// differ only in how they write an event (the sink interface).
//
// With a tenants file (the one ingress uses), every stream needs an API
// key, and a subscriber sees only results of its own tenant.
package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/switchboard-llm/switchboard/internal/httpserve"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	"github.com/switchboard-llm/switchboard/internal/webhook"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Config configures an egress. The zero value of every field but Topics is
// a working default.
type Config struct {
	// Addr is the HTTP listen address. Default 127.0.0.1:8081.
	Addr string
	// ReadCommitted reads results read_committed: every result (streamed
	// chunks included, which are not transactional) then waits until the
	// transactions open before it end. Not needed for router-worker's
	// --exactly-once: read_uncommitted, the default, shows a result of a
	// transaction only once it committed too (see hub.publish), without
	// holding chunks back.
	ReadCommitted bool
	// Kafka says how to reach the cluster.
	Kafka kafkaconf.Config
	// Topics names the topics (from topics.yaml). Required.
	Topics *topicspec.Spec
	// ReplayWindow is how far back a new subscriber without a cursor is
	// replayed, and how far back the index of recent results reaches (the
	// live reader starts that far back). Default 5m.
	ReplayWindow time.Duration
	// ReplayTimeout bounds a replay from Kafka, the wait for a reader of
	// the replay pool included. Default 30s.
	ReplayTimeout time.Duration
	// ReplayReaders bounds the readers (Kafka clients) that replay from
	// Kafka what the index of recent results does not hold; each serves
	// every stream of the partition it reads (see replaypool.go). Default 4.
	ReplayReaders int
	// ReplayReaderBytes bounds the events one replay reader has read and its
	// streams have not written yet (estimated as for RecentBytes); above it
	// the reader waits. Default 16 MiB.
	ReplayReaderBytes int64
	// RecentBytes bounds the in-memory index of recent results (the last
	// ReplayWindow of every results partition) from which new streams
	// replay without reading Kafka; the bound is on an estimate of the
	// memory held (see recent.go). Default 64 MiB. Negative: no index,
	// every replay reads Kafka.
	RecentBytes int64
	// SubscriberBuffer is how many events may wait for one slow subscriber
	// before it is disconnected with a cursor to resume from. Default 1024.
	SubscriberBuffer int
	// Heartbeat is the interval of SSE keep-alive comments and WebSocket
	// pings. Default 15s.
	Heartbeat time.Duration
	// WriteTimeout bounds one write to a client; a client that stops
	// reading altogether is disconnected. Default 10s.
	WriteTimeout time.Duration
	// MaxStreamsPerTenant caps one tenant's open streams (SSE, WebSocket
	// and gRPC) on this instance; beyond it a stream is refused with 429
	// too_many_streams. Default 10000; negative: no cap.
	MaxStreamsPerTenant int
	// MaxStreamsPerConversation caps the open streams of one conversation
	// of one tenant on this instance (429 too_many_streams beyond).
	// Default 64; negative: no cap.
	MaxStreamsPerConversation int
	// SendBuffer is the kernel send buffer (SO_SNDBUF) of every HTTP
	// connection, so a client that stops reading holds a bounded amount
	// of kernel memory and its stream notices soon. Default 64 KiB;
	// negative: the system's default (which grows to several MiB).
	SendBuffer int
	// MaxUnsentBytes is how many written bytes a client may leave unread in
	// its connection's send queue (Linux): before each event a stream
	// whose backlog is larger waits for it to fall, and ends with reason
	// overflow when it has not within WriteTimeout. Default half of
	// SendBuffer (32 KiB; 1 MiB with the system's buffer); negative: no check (then only WriteTimeout
	// bounds a client that stops reading).
	MaxUnsentBytes int
	// MaxConnsPerAddr caps the open HTTP connections of one client IP
	// address; more are closed as soon as they are accepted. Default 0:
	// no cap.
	MaxConnsPerAddr int
	// GRPCAddr, when set, is the listen address of the gRPC API
	// (switchboard.v1.Egress). Empty: no gRPC.
	GRPCAddr string
	// CORSOrigins are the origins whose browser pages may read the SSE
	// streams (see httpserve.CORS). Default none.
	CORSOrigins []string
	// WSOriginPatterns lists the origins (besides the request's host) whose
	// browser pages may open WebSocket streams; see
	// websocket.AcceptOptions.OriginPatterns.
	WSOriginPatterns []string
	// Tenants, when set, are the tenants ingress also uses: every stream
	// then needs one of their API keys and gets only its tenant's results,
	// and webhook delivery uses each tenant's webhook_url and secret. Nil:
	// no keys, every result visible, only the requests' own webhooks; New
	// refuses that unless AllowAnonymous is set.
	Tenants *tenant.Set
	// TenantsFile, when set, is used instead of Tenants: the tenants file,
	// reloaded when it changes (checked every TenantsCheckInterval,
	// default 1s; negative: never) and on every value from ReloadSignal,
	// with webhook secrets read by TenantsGetenv (nil: none). A revoked
	// key's open streams end with the end event "revoked"; a file that
	// does not load is rejected with an error and the running tenants stay.
	TenantsFile          string
	TenantsGetenv        func(string) string
	TenantsCheckInterval time.Duration
	ReloadSignal         <-chan os.Signal
	// AllowAnonymous lets egress run without Tenants, every stream open
	// to anyone who can reach it (logged as a warning at every start).
	AllowAnonymous bool
	// Webhooks configures webhook delivery (off by default; package
	// webhook does it).
	Webhooks webhook.Config
	// CursorSecret keys the cursor tokens of events (see cursorCodec):
	// every egress instance of a deployment needs the same one for a
	// client to resume on any of them. Empty: a random secret, so cursors
	// resume only on this instance until it restarts (logged).
	CursorSecret tenant.Secret
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry receives the service's metrics. Default: a new registry.
	Registry *prometheus.Registry
}

// Defaults returns the configuration New completes a Config with: every
// setting that has a default of its own. Settings derived from others
// (MaxUnsentBytes from SendBuffer) stay zero, so that they follow what
// they derive from; the mains take their flag defaults from here.
func Defaults() Config {
	var c Config
	c.setDefaults()
	c.MaxUnsentBytes = 0
	c.Logger, c.Registry = nil, nil
	return c
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8081"
	}
	if c.TenantsCheckInterval == 0 {
		c.TenantsCheckInterval = time.Second
	}
	if c.ReplayWindow == 0 {
		c.ReplayWindow = 5 * time.Minute
	}
	if c.ReplayTimeout == 0 {
		c.ReplayTimeout = 30 * time.Second
	}
	if c.ReplayReaders == 0 {
		c.ReplayReaders = 4
	}
	if c.ReplayReaderBytes == 0 {
		c.ReplayReaderBytes = 16 << 20
	}
	if c.RecentBytes == 0 {
		c.RecentBytes = 64 << 20
	}
	if c.SubscriberBuffer == 0 {
		c.SubscriberBuffer = 1024
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxStreamsPerTenant == 0 {
		c.MaxStreamsPerTenant = 10000
	}
	if c.MaxStreamsPerConversation == 0 {
		c.MaxStreamsPerConversation = 64
	}
	if c.SendBuffer == 0 {
		c.SendBuffer = 64 << 10
	}
	if c.MaxUnsentBytes == 0 {
		c.MaxUnsentBytes = 1 << 20 // the system's buffer grows to several MiB
		if c.SendBuffer > 0 {
			c.MaxUnsentBytes = max(1, c.SendBuffer/2)
		}
	}
	c.Webhooks.SetDefaults()
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
		return errors.New("egress: topics spec is required")
	}
	if c.ReplayWindow < 0 || c.ReplayTimeout < 0 || c.SubscriberBuffer < 1 || c.Heartbeat < 0 || c.WriteTimeout < 0 {
		return errors.New("egress: windows, timeouts and buffers must be positive")
	}
	if c.ReplayReaders < 1 || c.ReplayReaderBytes < 1 {
		return errors.New("egress: replay readers and their bytes must be positive")
	}
	if c.Tenants == nil && c.TenantsFile == "" && !c.AllowAnonymous {
		return errors.New("egress: no tenants file: every stream would be open to anyone; give --tenants, or --allow-anonymous for a closed network")
	}
	if err := c.Webhooks.Validate(); err != nil {
		return err
	}
	return c.Kafka.Validate()
}

// Egress serves result streams.
type Egress struct {
	cfg     Config
	log     *slog.Logger
	topic   string
	client  *kgo.Client // the live reader of every results partition
	adm     *kadm.Client
	hub     *hub
	replays *replayPool
	caps    *streamCaps
	tenants *tenant.Live // nil: no API keys (AllowAnonymous)
	metrics *metrics
	handler http.Handler
	grpc    *grpc.Server       // nil without GRPCAddr
	hooks   *webhook.Deliverer // nil without webhooks
	cursors *cursorCodec
	tokens  *tokenCodec
	origin  uint64        // originTag of the cluster, set before ready (region.go)
	ready   chan struct{} // closed once the live reader is positioned
	stop    chan struct{} // closed when Run begins to stop
}

// isolation returns the fetch isolation option of the result readers.
func (c *Config) isolation() []kgo.Opt {
	if c.ReadCommitted {
		return []kgo.Opt{kgo.FetchIsolationLevel(kgo.ReadCommitted())}
	}
	return nil
}

// New validates cfg and creates the Kafka clients; Run positions them.
func New(cfg Config) (*Egress, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Tenants == nil && cfg.TenantsFile == "" {
		cfg.Logger.Warn("egress runs without API keys (--allow-anonymous): every stream is open to anyone who can reach it")
	}
	secret := []byte(cfg.CursorSecret)
	if len(secret) == 0 {
		cfg.Logger.Warn("no cursor secret (SWITCHBOARD_CURSOR_SECRET): cursors resume only on this instance until it restarts; " +
			"give every egress instance the same secret")
		secret = randomCursorSecret()
	}
	cursors, err := newCursorCodec(secret)
	if err != nil {
		return nil, fmt.Errorf("egress: cursors: %w", err)
	}
	tokens, err := newTokenCodec(secret) // the same secret: instances that resume each other's cursors take each other's tokens
	if err != nil {
		return nil, fmt.Errorf("egress: stream tokens: %w", err)
	}
	cfg.Kafka = cfg.Kafka.Instrument("egress", cfg.Registry)
	// Control records: the transaction markers that let results of
	// router-worker's transactions through (txnview, hub.publish).
	cl, err := kgo.NewClient(append(append(cfg.Kafka.Opts(cfg.Logger), cfg.isolation()...), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, fmt.Errorf("egress: kafka client: %w", err)
	}
	e := &Egress{
		cfg:     cfg,
		log:     cfg.Logger,
		topic:   cfg.Topics.Name(topicspec.Results),
		client:  cl,
		adm:     kadm.NewClient(cl),
		metrics: newMetrics(cfg.Registry),
		cursors: cursors,
		tokens:  tokens,
		caps:    newStreamCaps(cfg.MaxStreamsPerTenant, cfg.MaxStreamsPerConversation),
		ready:   make(chan struct{}),
		stop:    make(chan struct{}),
	}
	if e.tenants, err = openTenants(cfg, e.metrics); err != nil {
		cl.Close()
		return nil, err
	}
	var rc *recent
	if cfg.RecentBytes > 0 {
		rc = newRecent(cfg.RecentBytes, cfg.ReplayWindow, e.metrics)
	}
	e.hub = newHub(e.metrics, rc)
	e.replays = newReplayPool(e.topic, append(cfg.Kafka.Opts(nil), cfg.isolation()...), cfg.ReplayReaders, cfg.ReplayReaderBytes,
		cfg.Registry, e.metrics.undecodable, cfg.Logger)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/conversations/{conversation_id}/events", e.handleEvents)
	mux.HandleFunc("GET /v1/conversations/{conversation_id}/ws", e.handleWS)
	mux.HandleFunc("POST /v1/stream-tokens", e.handleStreamToken)
	mux.HandleFunc("GET /asyncapi.yaml", serveAsyncAPI)
	e.handler = httpserve.CORS{Origins: cfg.CORSOrigins, Methods: []string{http.MethodGet}}.Handler(httpserve.JSONErrors(mux))
	if cfg.GRPCAddr != "" {
		e.grpc = grpc.NewServer()
		pb.RegisterEgressServer(e.grpc, &grpcServer{e: e})
		reflection.Register(e.grpc) // so grpcurl and similar tools can list and call it
	}
	if cfg.Webhooks.Enabled {
		// Webhooks get terminal results only, so read_committed costs
		// them no chunk latency: a result of a transaction that aborted
		// (router-worker --exactly-once) is never POSTed.
		e.hooks, err = webhook.New(cfg.Webhooks, []string{e.topic}, cfg.Topics.Name(topicspec.DeadLetter), e.tenantSet,
			append(cfg.Kafka.Opts(cfg.Logger), kgo.FetchIsolationLevel(kgo.ReadCommitted())), cfg.Registry, cfg.Logger)
		if err != nil {
			cl.Close()
			return nil, err
		}
	}
	return e, nil
}

// Handler returns the HTTP API, for tests that serve it themselves.
func (e *Egress) Handler() http.Handler { return e.handler }

// Run positions the live reader at the end of every results partition,
// serves HTTP (and gRPC), delivers webhooks, and forwards results until ctx
// is done; then it closes every stream, drains the webhook deliveries in
// flight and returns.
//
// The listeners are bound first: a taken address fails Run before the
// webhook group is joined.
func (e *Egress) Run(ctx context.Context) error {
	defer e.client.Close()
	defer e.replays.close()
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", e.cfg.Addr)
	if err != nil {
		e.closeHooks()
		return fmt.Errorf("egress: listen: %w", err)
	}
	var gln net.Listener
	if e.grpc != nil {
		if gln, err = new(net.ListenConfig).Listen(ctx, "tcp", e.cfg.GRPCAddr); err != nil {
			ln.Close()
			e.closeHooks()
			return fmt.Errorf("egress: grpc listen: %w", err)
		}
	}
	// The servers, webhook delivery and the stream of results run until
	// ctx is done or one of them fails, which stops the others.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return httpserve.Serve(gctx, ln, e.handler, httpserve.Options{
			Grace:           2 * time.Second,
			MaxConnsPerAddr: max(0, e.cfg.MaxConnsPerAddr),
			SendBuffer:      max(0, e.cfg.SendBuffer),
		}, e.log)
	})
	if gln != nil {
		g.Go(func() error {
			return httpserve.ServeGRPC(gctx, gln, e.grpc, httpserve.Options{Grace: 2 * time.Second, MaxConnsPerAddr: max(0, e.cfg.MaxConnsPerAddr)}, e.log)
		})
	}
	if e.hooks != nil {
		g.Go(func() error { return e.hooks.Run(gctx) })
	}
	if e.tenants != nil {
		g.Go(func() error { e.tenants.Watch(gctx, e.cfg.ReloadSignal, e.cfg.TenantsCheckInterval); return nil })
	}
	g.Go(func() error { return e.consume(gctx) })
	return g.Wait()
}

// consume positions the hub, then publishes every result fetched until ctx
// is done; then open streams end with an "end" event, reason "shutdown".
func (e *Egress) consume(ctx context.Context) error {
	defer func() {
		close(e.stop)
		e.hub.closeAll()
	}()
	if err := e.position(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	close(e.ready)
	for {
		fetches := e.client.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			e.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		fetches.EachRecord(e.hub.publish)
	}
}

// position finds where the live reader starts in every results partition
// and starts it there, retrying until the cluster answers or ctx ends.
// Without an index of recent results it starts at the end, or at the last
// stable offset when a transaction is open (its results are let through
// at its commit only if the reader saw them). With one, it starts
// ReplayWindow back (or at the last stable offset, if earlier), so that the index holds the window from the
// first seconds on: the results read while catching up reach the
// subscribers opened meanwhile as live events, after their replay from the
// index (the hub joins the two as it does at the end).
func (e *Egress) position(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		now := time.Now()
		since := now.Add(-e.cfg.ReplayWindow)
		ends, err := e.adm.ListEndOffsets(ctx, e.topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil && len(ends[e.topic]) == 0 {
			err = fmt.Errorf("topic %s has no partitions (is it provisioned?)", e.topic)
		}
		// The last stable offsets: a transaction open there has its
		// records from there on, and the reader must see them to let them
		// through at its commit (txnview).
		var stable kadm.ListedOffsets
		if err == nil {
			stable, err = e.adm.ListCommittedOffsets(ctx, e.topic)
			if err == nil {
				err = stable.Error()
			}
		}
		var md kadm.Metadata
		if err == nil {
			md, err = e.adm.BrokerMetadata(ctx)
		}
		var window kadm.ListedOffsets
		if err == nil && e.hub.recent != nil {
			window, err = e.adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), e.topic)
			if err == nil {
				err = window.Error()
			}
		}
		if err == nil {
			offsets := map[int32]kgo.Offset{}
			next := map[int32]int64{}
			ends.Each(func(o kadm.ListedOffset) {
				at := o.Offset
				if w, ok := window.Lookup(e.topic, o.Partition); ok && w.Offset >= 0 && w.Offset < at {
					at = w.Offset
				}
				if s, ok := stable.Lookup(e.topic, o.Partition); ok && s.Offset >= 0 && s.Offset < at {
					at = s.Offset
				}
				offsets[o.Partition] = kgo.NewOffset().At(at)
				next[o.Partition] = at
			})
			// Every record before the start is older than the window
			// (Kafka listed the first at or after it); without an index
			// nothing relies on this.
			e.hub.start(next, since, now)
			e.origin = originTag(md.Cluster)
			e.client.AddConsumePartitions(map[string]map[int32]kgo.Offset{e.topic: offsets})
			e.log.Info("egress reading results", "topic", e.topic, "partitions", len(offsets), "cluster_id", md.Cluster)
			return nil
		}
		if attempt%10 == 0 {
			e.log.Warn("waiting for the results topic", "topic", e.topic, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// closeHooks releases the webhook engine when Run ends before running it.
func (e *Egress) closeHooks() {
	if e.hooks != nil {
		e.hooks.Close()
	}
}

// Ready is the admin listener's /readyz: ready once the live reader is
// positioned on the results topic, so streams can be served. With webhooks,
// the detail also reports the webhook group membership and the partitions
// this instance delivers; it does not gate readiness (streams work without
// it, and an instance beyond the partition count delivers nothing).
func (e *Egress) Ready(*http.Request) (string, error) {
	detail := ""
	if e.hooks != nil {
		detail = "webhooks: " + e.hooks.Status().String()
	}
	select {
	case <-e.ready:
		return detail, nil
	default:
		return detail, errors.New("the results topic is not positioned yet")
	}
}
