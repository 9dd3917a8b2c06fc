// Package ingress is the front door of the pipeline: it takes requests over
// HTTP (single and batch), WebSocket and gRPC, authenticates them against
// the tenants file, applies the tenant's permissions and rate limits, the
// Idempotency-Key rules and lag-driven admission, and produces each one as
// a record keyed by conversation ID to its lane's requests topic. All three
// protocols go through one adapter core (submit), so they check the same
// things and produce the same record. A request is answered only after the
// broker acknowledged its record, so an acknowledged request is never lost.
package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/switchboard-llm/switchboard/internal/catalog"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/httpserve"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/status"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	"github.com/switchboard-llm/switchboard/internal/webhook/allowlist"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Config configures an ingress. The zero value of every field but Topics
// and Tenants (or TenantsFile) is a working default.
type Config struct {
	// Addr is the HTTP (and WebSocket) listen address. Default 127.0.0.1:8080.
	Addr string
	// GRPCAddr is the gRPC listen address; empty means no gRPC listener.
	GRPCAddr string
	// CORSOrigins are the origins whose browser pages may call the HTTP
	// API (see httpserve.CORS). Default none.
	CORSOrigins []string
	// Kafka says how to reach the cluster.
	Kafka kafkaconf.Config
	// Topics names the topics (from topics.yaml). Required.
	Topics *topicspec.Spec
	// Tenants maps API keys to tenants, fixed for the ingress's life.
	// TenantsFile, when set, is used instead: the tenants file, reloaded
	// when it changes (checked every TenantsCheckInterval, default 1s;
	// negative: never) and on every value from ReloadSignal. A revoked
	// key is refused from the reload on, and its open WebSocket and gRPC
	// streams are closed. A file that does not load is rejected with an
	// error and the running tenants stay. One of the two is required.
	Tenants              *tenant.Set
	TenantsFile          string
	TenantsCheckInterval time.Duration
	ReloadSignal         <-chan os.Signal
	// WebhookAllow lists webhook targets every tenant's requests may
	// name, besides the tenants file's lists (package allowlist): give
	// it egress's --webhook-allow. A request naming a target on no list
	// of its tenant is refused with 400 webhook_not_allowed.
	WebhookAllow []string
	// MaxBodyBytes bounds a request body and a WebSocket or gRPC message.
	// Default 1 MiB.
	MaxBodyBytes int64
	// MaxBatchBytes bounds the body of a batch. Default 8 MiB.
	MaxBatchBytes int64
	// MaxBatchItems bounds the requests of a batch. Default 100.
	MaxBatchItems int
	// MaxInFlight bounds the requests being produced at once, over every
	// protocol; beyond it requests get 503. Default 10000.
	MaxInFlight int
	// WSMaxInFlight bounds the submits in flight on one WebSocket or gRPC
	// stream; beyond it the socket is not read. Default 256.
	WSMaxInFlight int
	// IdempotencyWindow is how long an Idempotency-Key is remembered.
	// Default 10m.
	IdempotencyWindow time.Duration
	// IdempotencyMaxKeys bounds the remembered keys; the oldest go first.
	// Default 200000.
	IdempotencyMaxKeys int
	// ProduceTimeout bounds how long a request waits for the broker's
	// acknowledgement before it is answered 503. Default 5s.
	ProduceTimeout time.Duration
	// ProduceLinger is the producer's linger. Default 0 (see
	// docs/BENCHMARKS.md: batches form while requests are in flight).
	ProduceLinger time.Duration
	// ProbeInterval is how often the brokers are pinged; while they do not
	// answer, requests get 503 at once, and requests waiting for an
	// acknowledgement get 503 when a ping fails. Default 250ms; a ping
	// times out after twice the interval (at most 1s).
	ProbeInterval time.Duration
	// Admission configures lag-driven admission.
	Admission AdmissionConfig
	// OpenAI configures the OpenAI-compatible API.
	OpenAI OpenAIConfig
	// ShutdownGrace bounds how long open requests may finish after a stop.
	// Default 10s.
	ShutdownGrace time.Duration
	// ReadHeaderTimeout bounds reading a request's headers. Default 5s.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds reading a request's body, from the end of its
	// headers; a body still incomplete then gets 408. Default 10s.
	BodyTimeout time.Duration
	// WriteTimeout bounds answering a request, from the end of its
	// headers. Default 30s (it must exceed ProduceTimeout).
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection idle this long. Default 60s.
	IdleTimeout time.Duration
	// MaxConnsPerAddr caps the open connections of one client IP address,
	// on the HTTP and the gRPC listener each; more are closed as soon as
	// they are accepted. Default 1024; negative: no cap.
	MaxConnsPerAddr int
	// MaxConnsPerTenant caps one tenant's open HTTP requests, WebSocket
	// connections and gRPC calls (a SubmitStream counts as one while it is
	// open), over every client address; beyond it requests get 429
	// too_many_connections (gRPC: RESOURCE_EXHAUSTED with that reason).
	// Default 2048; negative: no cap.
	MaxConnsPerTenant int
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
	// Registry receives the service's metrics. Default: a new registry.
	Registry *prometheus.Registry
	// StatusInterval is how often ingress publishes its status record to
	// the status topic (internal/status; the console reads it). Default
	// status.DefaultInterval; negative: never.
	StatusInterval time.Duration
	// Now is the clock of the rate limits and the idempotency window.
	// Default time.Now.
	Now func() time.Time
}

// Defaults returns the configuration New completes a Config with: every
// setting that has a default of its own. Settings derived from others
// (the admission low marks) stay zero, so that they follow what they
// derive from; the mains take their flag defaults from here.
func Defaults() Config {
	var c Config
	c.setDefaults()
	c.Admission.BatchLow, c.Admission.InteractiveLow = 0, 0
	c.Logger, c.Registry, c.Now = nil, nil, nil
	return c
}

func (c *Config) setDefaults() {
	if c.StatusInterval == 0 {
		c.StatusInterval = status.DefaultInterval
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.TenantsCheckInterval == 0 {
		c.TenantsCheckInterval = time.Second
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 8 << 20
	}
	if c.MaxBatchItems == 0 {
		c.MaxBatchItems = 100
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 10000
	}
	if c.WSMaxInFlight == 0 {
		c.WSMaxInFlight = 256
	}
	if c.IdempotencyWindow == 0 {
		c.IdempotencyWindow = 10 * time.Minute
	}
	if c.IdempotencyMaxKeys == 0 {
		c.IdempotencyMaxKeys = 200000
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 5 * time.Second
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 250 * time.Millisecond
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.MaxConnsPerAddr == 0 {
		c.MaxConnsPerAddr = 1024
	}
	if c.MaxConnsPerTenant == 0 {
		c.MaxConnsPerTenant = 2048
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registry == nil {
		c.Registry = telemetry.NewRegistry()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Admission.setDefaults()
	c.OpenAI.setDefaults()
}

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	if c.Topics == nil {
		return errors.New("ingress: topics spec is required")
	}
	if c.Tenants == nil && c.TenantsFile == "" {
		return errors.New("ingress: tenants are required")
	}
	if c.MaxBodyBytes < 0 || c.MaxBatchBytes < 0 || c.MaxBatchItems < 0 || c.MaxInFlight < 0 || c.WSMaxInFlight < 0 ||
		c.IdempotencyWindow < 0 || c.IdempotencyMaxKeys < 0 || c.ProduceTimeout < 0 || c.ProduceLinger < 0 ||
		c.ProbeInterval < 0 || c.ShutdownGrace < 0 || c.ReadHeaderTimeout < 0 || c.BodyTimeout < 0 ||
		c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.OpenAI.Timeout < 0 || c.OpenAI.MaxWaiting < 0 {
		return errors.New("ingress: limits and timeouts must not be negative")
	}
	if err := c.Admission.validate(); err != nil {
		return err
	}
	return c.Kafka.Validate()
}

// Ingress accepts requests and produces them to Kafka.
type Ingress struct {
	cfg       Config
	log       *slog.Logger
	client    *kgo.Client
	topics    map[string]string // lane -> topic
	metrics   *metrics
	handler   http.Handler
	grpc      *grpc.Server
	limits    *limits
	idem      *idempotency
	inFlight  semaphore
	health    *health
	admission *admission // nil when disabled
	models    catalog.Watcher
	tenants   *tenant.Live
	answers   *answers // reads answers back for the OpenAI-compatible API
	// webhookAllow is WebhookAllow, parsed.
	webhookAllow *allowlist.List
	// tenantConns counts each tenant's open requests and WebSockets.
	tenantConns *counter

	stop     chan struct{} // closed when Run's context ends: stream adapters wind down
	stopOnce sync.Once
	wsConns  handlers // WebSocket handlers (hijacked: the HTTP server does not wait for them)
}

// New validates cfg and connects a producer; it does not wait for the
// cluster to answer (see /readyz).
func New(cfg Config) (*Ingress, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	allow, err := allowlist.Parse(cfg.WebhookAllow)
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	cfg.Kafka = cfg.Kafka.Instrument("ingress", cfg.Registry)
	// The producer is idempotent (franz-go's default) with acks=all, so a
	// retried produce never duplicates a record in its partition.
	opts := append(cfg.Kafka.Opts(cfg.Logger),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(max(cfg.ProduceTimeout, time.Second)), // kgo's floor is 1s
		kgo.ProducerLinger(cfg.ProduceLinger),
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
		limits:   newLimits(cfg.Now),
		idem:     newIdempotency(cfg.IdempotencyWindow, cfg.IdempotencyMaxKeys, cfg.Now),
		inFlight: make(semaphore, cfg.MaxInFlight),
		stop:     make(chan struct{}),

		tenantConns:  newCounter(max(0, cfg.MaxConnsPerTenant)),
		webhookAllow: allow,
	}
	in.metrics = newMetrics(cfg.Registry, func() float64 { return float64(len(in.inFlight)) })
	if in.tenants, err = openTenants(cfg, in.metrics); err != nil {
		cl.Close()
		return nil, err
	}
	in.health = newHealth(func(up bool) {
		if up {
			in.metrics.brokerReachable.Set(1)
			in.log.Info("kafka reachable again")
		} else {
			in.metrics.brokerReachable.Set(0)
			in.log.Warn("kafka unreachable: answering 503 until it is back")
		}
	})
	if !cfg.Admission.Disabled {
		in.admission = newAdmission(cfg.Admission, in.topics, in.log, in.metrics)
	}
	// The results reader fetches every result, mostly others': no trace
	// spans for them (the calls' own spans cover the wait).
	untraced := cfg.Kafka
	untraced.Tracing = nil
	in.answers = newAnswers(untraced.Opts(cfg.Logger), cfg.Topics.Name(topicspec.Results), cfg.OpenAI.MaxWaiting, cfg.Logger, in.metrics)
	mux := http.NewServeMux()
	for _, rt := range in.routes() {
		h := rt.handler
		if strings.HasPrefix(rt.path, "/v1/") {
			write := writeFailure
			if rt.openai {
				write = writeOpenAIFailure
			}
			h = in.guard(h, write)
		}
		mux.HandleFunc(rt.method+" "+rt.path, h)
	}
	in.handler = cfg.Kafka.Tracing.HTTP(httpserve.CORS{Origins: cfg.CORSOrigins}.Handler(httpserve.JSONErrors(mux)))
	in.grpc = grpc.NewServer(grpc.MaxRecvMsgSize(int(cfg.MaxBodyBytes)),
		grpc.ChainUnaryInterceptor(in.grpcGuardUnary), grpc.ChainStreamInterceptor(in.grpcGuardStream))
	pb.RegisterIngressServer(in.grpc, &grpcServer{in: in})
	reflection.Register(in.grpc)
	return in, nil
}

// route is one endpoint of the HTTP API; the OpenAPI document's test
// compares its paths with these.
type route struct {
	method, path string
	handler      http.HandlerFunc
	openai       bool // answers errors in OpenAI's shape
}

func (in *Ingress) routes() []route {
	rts := []route{
		{"POST", "/v1/conversations/{conversation_id}/messages", in.handleMessage, false},
		{"POST", "/v1/messages:batch", in.handleBatch, false},
		{"DELETE", "/v1/conversations/{conversation_id}/history", in.handleForget, false},
		{"GET", "/v1/ws", in.handleWS, false},
		{"GET", "/openapi.json", serveOpenAPI, false},
	}
	if !in.cfg.OpenAI.Disabled {
		rts = append(rts,
			route{"POST", "/v1/chat/completions", in.handleChatCompletions, true},
			route{"GET", "/v1/models", in.handleModels, true},
			route{"GET", "/v1/models/{model}", in.handleModel, true})
	}
	return rts
}

// Handler returns the HTTP API, for tests that serve it themselves.
func (in *Ingress) Handler() http.Handler { return in.handler }

// Run serves the HTTP API on cfg.Addr and gRPC on cfg.GRPCAddr, probes the
// brokers and reads the consumer lag, until ctx is done. Then it stops
// accepting (new connections, WebSocket and gRPC stream submits), lets the
// requests in flight finish within ShutdownGrace, flushes the producer and
// closes it.
func (in *Ingress) Run(ctx context.Context) error {
	defer in.client.Close()
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", in.cfg.Addr)
	if err != nil {
		return fmt.Errorf("ingress: listen: %w", err)
	}
	var gln net.Listener
	if in.cfg.GRPCAddr != "" {
		if gln, err = new(net.ListenConfig).Listen(ctx, "tcp", in.cfg.GRPCAddr); err != nil {
			ln.Close()
			return fmt.Errorf("ingress: listen grpc: %w", err)
		}
	}
	bg, stopBg := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { in.tenants.Watch(bg, in.cfg.ReloadSignal, in.cfg.TenantsCheckInterval) })
	wg.Go(func() {
		in.health.probe(bg, in.cfg.ProbeInterval, min(2*in.cfg.ProbeInterval, time.Second), in.client.Ping)
	})
	if in.admission != nil {
		adm := kadm.NewClient(in.client)
		wg.Go(func() { in.admission.run(bg, adm) })
	}
	if _, ok := in.cfg.Topics.Topic(topicspec.Models); ok {
		topic := in.cfg.Topics.Name(topicspec.Models)
		wg.Go(func() {
			if err := in.models.Run(bg, in.cfg.Kafka.Opts(in.log), topic, in.log); err != nil {
				in.log.Warn("not reading the models catalog: every model is accepted", "err", err)
			}
		})
	}
	if !in.cfg.OpenAI.Disabled {
		wg.Go(func() { in.answers.run(bg) })
	}
	wg.Go(func() { in.publishStatus(bg) })
	// The HTTP and gRPC servers run until ctx is done or one of them
	// fails, which stops the other; submits stop being taken at once.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		<-gctx.Done()
		in.stopOnce.Do(func() { close(in.stop) })
		return nil
	})
	g.Go(func() error {
		return httpserve.Serve(gctx, ln, in.handler, httpserve.Options{
			Grace:             in.cfg.ShutdownGrace,
			ReadHeaderTimeout: in.cfg.ReadHeaderTimeout,
			IdleTimeout:       in.cfg.IdleTimeout,
			MaxConnsPerAddr:   max(0, in.cfg.MaxConnsPerAddr),
		}, in.log)
	})
	if gln != nil {
		g.Go(func() error {
			if err := httpserve.ServeGRPC(gctx, gln, in.grpc, httpserve.Options{Grace: in.cfg.ShutdownGrace, MaxConnsPerAddr: max(0, in.cfg.MaxConnsPerAddr)}, in.log); err != nil {
				return fmt.Errorf("ingress: %w", err)
			}
			return nil
		})
	}
	err = g.Wait()
	in.waitWS()
	stopBg()
	wg.Wait()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.ShutdownGrace)
	defer cancel()
	if ferr := in.client.Flush(fctx); ferr != nil && err == nil {
		err = fmt.Errorf("ingress: flush: %w", ferr)
	}
	return err
}

// waitWS waits, within ShutdownGrace, for WebSocket handlers to answer
// what they have in flight and close.
func (in *Ingress) waitWS() {
	select {
	case <-in.wsConns.close():
	case <-time.After(in.cfg.ShutdownGrace):
		in.log.Warn("websocket connections still open after the shutdown grace")
	}
}

// handlers counts running handlers and, once closed, refuses new ones;
// unlike a WaitGroup, adding may race with waiting.
type handlers struct {
	mu      sync.Mutex
	n       int
	closing bool
	idle    chan struct{} // closed when closing and n == 0
}

// add registers a handler; false means ingress is stopping.
func (h *handlers) add() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.n++
	return true
}

func (h *handlers) done() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n--
	if h.closing && h.n == 0 {
		close(h.idle)
	}
}

// close refuses new handlers and returns a channel closed when none runs.
func (h *handlers) close() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closing {
		h.closing = true
		h.idle = make(chan struct{})
		if h.n == 0 {
			close(h.idle)
		}
	}
	return h.idle
}

// Ready reports whether ingress can accept requests (nil: ready), for the
// admin listener's /readyz.
func (in *Ingress) Ready(r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := in.client.Ping(ctx); err != nil {
		return fmt.Errorf("kafka unreachable: %w", err)
	}
	return nil
}
