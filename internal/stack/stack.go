// Package stack is the one launcher of Switchboard's local stack: the Kafka
// cluster (an embedded devbroker it starts, or an external cluster given by
// address, such as the local Apache Kafka of internal/kafkalocal), topics
// from topics.yaml, the model simulator, router-workers, egress and
// ingress, each a process of the real binaries. `make run` (cmd/stack),
// `loadtest --stack` and the end-to-end tests start stacks with it.
//
// Ports, readiness, logs, stop order and stopping by PID live here once: a
// Stack stops, kills and restarts only processes it started, by PID, and
// every wait is bounded. Supervise restarts a process that died on its own,
// with backoff, for the interactive `make run`.
package stack

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// DevKey is the development tenant's key (the repository's tenants.yaml):
// the default key of a stack's generated tenants file.
const DevKey = "sk-switchboard-dev"

// Names of the stack's processes. Router-workers, egress and ingress
// instances beyond the first are router-worker-2, egress-2, ingress-2, …
// (Config.Routers, Egresses, Ingresses); the nodes of a local Apache Kafka
// cluster (Config.Cluster) are kafka-1, kafka-2, kafka-3.
const (
	ProcDevbroker = "devbroker"
	ProcModelsim  = "modelsim"
	ProcRouter    = "router-worker"
	ProcEgress    = "egress"
	ProcIngress   = "ingress"
)

// Config shapes a stack. The zero value with Bin and Dir set is a stack on
// a devbroker, every process on free loopback ports, logs in Dir.
type Config struct {
	// Bin is the directory holding the binaries (make build). Required.
	Bin string
	// Dir holds the devbroker's data, generated files and (without Output)
	// every process's log. Required.
	Dir string

	// Brokers is an external Kafka cluster (comma-separated addresses);
	// empty starts a devbroker. Cluster, when set, is that cluster's local
	// nodes, which Kill and Start can then crash and restart by name
	// (kafka-1, …) and PIDs reports.
	Brokers string
	Cluster *kafkalocal.Cluster
	// DevbrokerPorts are the devbroker's three listeners; empty: free ports.
	DevbrokerPorts []int
	// DevbrokerDir is where the devbroker keeps its data. Default Dir/kafka.
	DevbrokerDir string
	// KafkaEnv, when set, adds to each Kafka client's environment, by binary
	// (topics, router-worker, egress, ingress), the connection settings of
	// its principal on a secured cluster (SWITCHBOARD_KAFKA_TLS=on, ...); its
	// SWITCHBOARD_BROKERS, when there, replaces Brokers for that binary (an
	// mTLS listener has ports of its own).
	KafkaEnv map[string][]string
	// ACLs, when set, are created by the topics step after the topics (so
	// the topics binary's principal must be allowed to alter ACLs): by role
	// (internal/acl's roles), the principal (User:x) to give that role's
	// least privilege, for this stack's topics and groups.
	ACLs map[string]string
	// TopicsFile replaces the built-in topics.yaml for every binary.
	TopicsFile string
	// TopicPrefix replaces the topics file's prefix for every binary, so
	// stacks sharing one cluster do not see each other's records.
	TopicPrefix string
	// RouterGroup is the router-workers' consumer group. Default
	// switchboard-router.
	RouterGroup string

	// Ports of the services; 0 picks a free loopback port. RouterPort is
	// router-worker's admin listener; EgressAdminPort and IngressAdminPort
	// are the admin listeners (/metrics, /healthz, /readyz) apart from
	// egress's and ingress's public APIs.
	ModelsimPort, RouterPort, EgressPort, IngressPort, IngressGRPCPort int
	EgressAdminPort, IngressAdminPort, EgressGRPCPort                  int
	// NoIngressGRPC starts ingress without its gRPC listener.
	NoIngressGRPC bool
	// EgressGRPC starts egress with its gRPC listener (switchboard.v1.Egress)
	// on EgressGRPCPort.
	EgressGRPC bool

	// ModelLatency, ModelJitter, LongTailFraction and LongTailLatency are
	// modelsim's flags. Defaults 200ms, 0 jitter, 0, 1500ms.
	ModelLatency, ModelJitter time.Duration
	LongTailFraction          float64
	LongTailLatency           time.Duration
	// BackendsFile is router-worker's backends file; empty generates one
	// with modelsim as the only backend of model "sim".
	BackendsFile string
	// BackendConcurrency is max_concurrency in the generated backends
	// file. Default 2048.
	BackendConcurrency int
	// BackendTimeout is the timeout in the generated backends file.
	// Default 60s.
	BackendTimeout time.Duration
	// TenantsFile is ingress's and egress's tenants file; empty generates
	// one with a single tenant, Tenant, whose key is APIKey.
	TenantsFile string
	// APIKey and Tenant name the generated tenant. Defaults DevKey and
	// "dev".
	APIKey, Tenant string

	// Routers is how many router-workers start. Default 1.
	Routers int
	// RouterArgs, EgressArgs and IngressArgs are extra flags of those
	// services; CommonArgs are given to every service (e.g. logging).
	RouterArgs, EgressArgs, IngressArgs, CommonArgs []string
	// RouterInstanceArgs, when set, gives each router-worker (by index)
	// flags of its own, e.g. a static-membership --instance-id.
	RouterInstanceArgs func(i int) []string
	// Egresses and Ingresses are how many egress and ingress instances
	// start (default 1); instances beyond the first listen on free ports.
	// EgressInstanceArgs and IngressInstanceArgs, when set, give each (by
	// index) flags of its own.
	Egresses, Ingresses                     int
	EgressInstanceArgs, IngressInstanceArgs func(i int) []string

	// CursorSecret is egress's SWITCHBOARD_CURSOR_SECRET, given to every
	// process of the stack (restarted ones too), so a cursor one egress
	// made resumes on any other. Default: the environment's, else one kept
	// in Dir/cursor-secret (made on the first start).
	CursorSecret string

	// ReadyTimeout bounds each process's start. Default 60s.
	ReadyTimeout time.Duration
	// Output, when set, receives each process's output (e.g. prefixed
	// lines on a terminal) instead of Dir/<name>.log.
	Output func(name string) io.Writer
	// Logger receives the stack's own events (started, restarted). Default:
	// discard.
	Logger *slog.Logger
}

// Stack is a running stack.
type Stack struct {
	cfg Config
	// Brokers are the Kafka addresses the services use.
	Brokers string
	// IngressURL, IngressGRPC (host:port, empty without gRPC), EgressURL,
	// EgressGRPC (host:port, empty without Config.EgressGRPC) and
	// ModelsimURL reach the services; RouterURLs each router-worker's admin
	// endpoints (/metrics, /healthz, /readyz), in start order.
	IngressURL, IngressGRPC, EgressURL, EgressGRPC, ModelsimURL string
	RouterURLs                                                  []string
	// IngressAdminURL and EgressAdminURL are their admin listeners
	// (/metrics, /healthz, /readyz).
	IngressAdminURL, EgressAdminURL string
	// Ingresses and Egresses are every ingress and egress instance, in
	// start order; the first is the one of IngressURL and EgressURL.
	Ingresses, Egresses []Endpoint
	// APIKey is a key ingress and egress accept; Tenant its tenant (empty
	// with Config.TenantsFile).
	APIKey, Tenant string
	// TenantsFile and BackendsFile are the files the services use.
	TenantsFile, BackendsFile string

	mu       sync.Mutex
	procs    map[string]*proc
	order    []string
	routerN  int
	stopping bool
}

// Endpoint is where one ingress or egress instance listens.
type Endpoint struct {
	// Name is its process name (ingress, ingress-2, …).
	Name string
	// URL is its public HTTP API, AdminURL its admin listener, GRPC its
	// gRPC host:port (empty when it serves none).
	URL, AdminURL, GRPC string
}

type proc struct {
	name  string
	args  []string
	ready func(ctx context.Context) error
	cmd   *exec.Cmd
	done  chan struct{}
	err   error // the exit error, set before done closes
	// killed: the last exit was asked for (Kill, Stop), not a crash.
	killed bool
}

// Binaries are the binaries a stack on devbroker runs, as named in Bin.
func Binaries() []string {
	return []string{ProcDevbroker, "topics", ProcModelsim, ProcRouter, ProcEgress, ProcIngress}
}

// Validate reports whether the configuration can start a stack.
func (c Config) Validate() error {
	if c.Bin == "" || c.Dir == "" {
		return errors.New("stack: bin and dir are required")
	}
	for _, n := range []struct {
		name string
		v    int
	}{{ProcRouter, c.Routers}, {ProcEgress, c.Egresses}, {ProcIngress, c.Ingresses}} {
		if n.v < 0 || n.v > MaxInstances {
			return fmt.Errorf("stack: %d %s instances not between 1 and %d", n.v, n.name, MaxInstances)
		}
	}
	for _, b := range Binaries() {
		if b == ProcDevbroker && c.Brokers != "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(c.Bin, b)); err != nil {
			return fmt.Errorf("stack: %w (run make build)", err)
		}
	}
	if c.LongTailFraction < 0 || c.LongTailFraction > 1 {
		return fmt.Errorf("stack: long tail fraction %v not in [0, 1]", c.LongTailFraction)
	}
	return nil
}

func (c *Config) defaults() {
	if c.ModelLatency == 0 {
		c.ModelLatency = 200 * time.Millisecond
	}
	if c.LongTailLatency == 0 {
		c.LongTailLatency = 1500 * time.Millisecond
	}
	if c.BackendConcurrency == 0 {
		c.BackendConcurrency = 2048
	}
	if c.BackendTimeout == 0 {
		c.BackendTimeout = 60 * time.Second
	}
	if c.APIKey == "" {
		c.APIKey = DevKey
	}
	if c.Tenant == "" {
		c.Tenant = "dev"
	}
	if c.Routers == 0 {
		c.Routers = 1
	}
	if c.Egresses == 0 {
		c.Egresses = 1
	}
	if c.Ingresses == 0 {
		c.Ingresses = 1
	}
	if c.RouterGroup == "" {
		c.RouterGroup = "switchboard-router"
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 60 * time.Second
	}
	if c.DevbrokerDir == "" {
		c.DevbrokerDir = filepath.Join(c.Dir, "kafka")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.CursorSecret == "" {
		c.CursorSecret = os.Getenv("SWITCHBOARD_CURSOR_SECRET")
	}
	if c.CursorSecret == "" {
		c.CursorSecret = persistentSecret(filepath.Join(c.Dir, "cursor-secret"))
	}
}

// persistentSecret returns the secret kept in path, making it on first use,
// so that a stack started again on the same directory (make run) keeps its
// clients' cursors valid. A file that cannot be read or written gives a
// random secret for this start only.
func persistentSecret(path string) string {
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) >= 16 {
		return string(bytes.TrimSpace(b))
	}
	secret := rand.Text()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		_ = os.WriteFile(path, []byte(secret+"\n"), 0o600) // best effort: without it, cursors last one start
	}
	return secret
}

// topicArgs are the topics flags every Kafka-speaking binary gets.
func (c Config) topicArgs() []string {
	var a []string
	if c.TopicsFile != "" {
		a = append(a, "--topics-file", c.TopicsFile)
	}
	if c.TopicPrefix != "" {
		a = append(a, "--topic-prefix", c.TopicPrefix)
	}
	return a
}

// Start starts the stack in order (Kafka, topics, modelsim, router-workers,
// egress, ingress) and waits until each process is ready. On error it
// stops what it started.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, procs: map[string]*proc{}, APIKey: cfg.APIKey}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.startKafka(ctx); err != nil {
		return nil, err
	}
	if err := s.runTopics(ctx); err != nil {
		return nil, err
	}
	if err := s.startModelsim(ctx); err != nil {
		return nil, err
	}
	if err := s.writeFiles(); err != nil {
		return nil, err
	}
	for range cfg.Routers {
		if _, err := s.AddRouter(ctx); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Egresses {
		if err := s.startEgress(ctx, i); err != nil {
			return nil, err
		}
	}
	for i := range cfg.Ingresses {
		if err := s.startIngress(ctx, i); err != nil {
			return nil, err
		}
	}
	cfg.Logger.Info("stack ready", "brokers", s.Brokers, "ingress", s.IngressURL, "egress", s.EgressURL, "modelsim", s.ModelsimURL, "dir", cfg.Dir)
	return s, nil
}

func (s *Stack) startKafka(ctx context.Context) error {
	if s.cfg.Brokers != "" {
		s.Brokers = s.cfg.Brokers
		return nil
	}
	ports := s.cfg.DevbrokerPorts
	if len(ports) == 0 {
		var err error
		if ports, err = FreePorts(3); err != nil {
			return err
		}
	}
	var addrs, ps []string
	for _, p := range ports {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(p))
		ps = append(ps, strconv.Itoa(p))
	}
	s.Brokers = strings.Join(addrs, ",")
	readyFile := filepath.Join(s.cfg.Dir, "devbroker.ready")
	s.add(ProcDevbroker, []string{"--ports", strings.Join(ps, ","), "--data-dir", s.cfg.DevbrokerDir, "--ready-file", readyFile},
		func(ctx context.Context) error {
			return waitFor(ctx, s.cfg.ReadyTimeout, func() error {
				b, err := os.ReadFile(readyFile)
				if err == nil && len(strings.TrimSpace(string(b))) == 0 {
					err = errors.New("empty ready file")
				}
				return err
			})
		})
	return s.Start(ctx, ProcDevbroker)
}

func (s *Stack) runTopics(ctx context.Context) error {
	out, closeOut, err := s.output("topics")
	if err != nil {
		return err
	}
	defer closeOut()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, filepath.Join(s.cfg.Bin, "topics"), append(append([]string{"--brokers", s.brokersOf("topics")}, s.cfg.topicArgs()...), args...)...)
		cmd.Env = s.env("topics")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("stack: topics %s: %w%s", strings.Join(args, " "), err, s.seeLog("topics"))
		}
		return nil
	}
	if err := run(); err != nil {
		return err
	}
	for _, role := range slices.Sorted(maps.Keys(s.cfg.ACLs)) {
		args := []string{"--apply-acls", "--role", role, "--principal", s.cfg.ACLs[role], "--router-group", s.cfg.RouterGroup}
		if slices.Contains(s.cfg.RouterArgs, "--exactly-once") {
			args = append(args, "--exactly-once")
		}
		if slices.Contains(s.cfg.EgressArgs, "--webhooks") {
			args = append(args, "--webhooks")
		}
		if err := run(args...); err != nil {
			return err
		}
	}
	return nil
}

// env is the environment of binary bin's processes: the launcher's, the
// cursor secret, and bin's Kafka settings (Config.KafkaEnv).
func (s *Stack) env(bin string) []string {
	return append(append(os.Environ(), "SWITCHBOARD_CURSOR_SECRET="+s.cfg.CursorSecret), s.cfg.KafkaEnv[bin]...)
}

// brokersOf is the --brokers of binary bin: its own SWITCHBOARD_BROKERS in
// Config.KafkaEnv, else the stack's.
func (s *Stack) brokersOf(bin string) string {
	for _, kv := range s.cfg.KafkaEnv[bin] {
		if v, ok := strings.CutPrefix(kv, "SWITCHBOARD_BROKERS="); ok {
			return v
		}
	}
	return s.Brokers
}

func (s *Stack) startModelsim(ctx context.Context) error {
	addr, err := s.addr(s.cfg.ModelsimPort)
	if err != nil {
		return err
	}
	s.ModelsimURL = "http://" + addr
	s.add(ProcModelsim, []string{"--addr", addr, "--latency", s.cfg.ModelLatency.String(), "--jitter", s.cfg.ModelJitter.String(),
		"--long-tail-fraction", strconv.FormatFloat(s.cfg.LongTailFraction, 'f', -1, 64), "--long-tail-latency", s.cfg.LongTailLatency.String()},
		httpReady(s.ModelsimURL+"/healthz", s.cfg.ReadyTimeout))
	return s.Start(ctx, ProcModelsim)
}

// writeFiles writes the generated backends and tenants files.
func (s *Stack) writeFiles() error {
	s.BackendsFile = s.cfg.BackendsFile
	if s.BackendsFile == "" {
		s.BackendsFile = filepath.Join(s.cfg.Dir, "backends.yaml")
		if err := os.WriteFile(s.BackendsFile, fmt.Appendf(nil, "backends:\n  - name: modelsim\n    base_url: %s/v1\n    models: [sim]\n    max_concurrency: %d\n    timeout: %s\n",
			s.ModelsimURL, s.cfg.BackendConcurrency, s.cfg.BackendTimeout), 0o644); err != nil {
			return err
		}
	}
	s.TenantsFile = s.cfg.TenantsFile
	if s.TenantsFile == "" {
		s.Tenant = s.cfg.Tenant
		s.TenantsFile = filepath.Join(s.cfg.Dir, "tenants.yaml")
		// The generated tenant is shown everything a result can carry
		// (the load test reads the model's time from the timings).
		if err := os.WriteFile(s.TenantsFile, fmt.Appendf(nil, "tenants:\n  - name: %s\n    key_sha256: [%s]\n    show: [backend, timings, kafka_positions]\n",
			s.Tenant, tenant.HashKey(s.cfg.APIKey)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// AddRouter starts one more router-worker and waits until it is ready. It
// returns its name (router-worker, router-worker-2, …).
func (s *Stack) AddRouter(ctx context.Context) (string, error) {
	s.mu.Lock()
	i := s.routerN
	s.routerN++
	s.mu.Unlock()
	name := instanceName(ProcRouter, i)
	at := -1 // its index in RouterURLs
	return name, s.retryPorts(ctx, i == 0 && s.cfg.RouterPort != 0, func() error {
		addr, err := s.addr(firstPort(s.cfg.RouterPort, i))
		if err != nil {
			return err
		}
		args := append([]string{"--admin-addr", addr, "--brokers", s.brokersOf(ProcRouter), "--backends", s.BackendsFile, "--group", s.cfg.RouterGroup}, s.cfg.topicArgs()...)
		args = append(append(args, s.cfg.CommonArgs...), s.cfg.RouterArgs...)
		if s.cfg.RouterInstanceArgs != nil {
			args = append(args, s.cfg.RouterInstanceArgs(i)...)
		}
		s.mu.Lock()
		if at < 0 {
			at = len(s.RouterURLs)
			s.RouterURLs = append(s.RouterURLs, "http://"+addr)
		} else {
			s.RouterURLs[at] = "http://" + addr
		}
		s.mu.Unlock()
		s.add(name, args, httpReady("http://"+addr+"/readyz", s.cfg.ReadyTimeout))
		return s.Start(ctx, name)
	})
}

// instanceName is the process name of instance i (from 0) of service
// proc: proc, then proc-2, proc-3, ….
func instanceName(proc string, i int) string {
	if i == 0 {
		return proc
	}
	return proc + "-" + strconv.Itoa(i+1)
}

// firstPort is port for instance 0 and 0 (a free port) for the others.
func firstPort(port, i int) int {
	if i == 0 {
		return port
	}
	return 0
}

// startEgress starts egress instance i (from 0).
func (s *Stack) startEgress(ctx context.Context, i int) error {
	fixed := i == 0 && s.cfg.EgressPort+s.cfg.EgressAdminPort+s.cfg.EgressGRPCPort != 0
	return s.retryPorts(ctx, fixed, func() error { return s.startEgressOnce(ctx, i) })
}

func (s *Stack) startEgressOnce(ctx context.Context, i int) error {
	addr, err := s.addr(firstPort(s.cfg.EgressPort, i))
	if err != nil {
		return err
	}
	admin, err := s.addr(firstPort(s.cfg.EgressAdminPort, i))
	if err != nil {
		return err
	}
	ep := Endpoint{Name: instanceName(ProcEgress, i), URL: "http://" + addr, AdminURL: "http://" + admin}
	args := []string{"--addr", addr, "--admin-addr", admin, "--brokers", s.brokersOf(ProcEgress), "--tenants", s.TenantsFile,
		"--router-group", s.cfg.RouterGroup} // the console's
	if s.cfg.EgressGRPC {
		if ep.GRPC, err = s.addr(firstPort(s.cfg.EgressGRPCPort, i)); err != nil {
			return err
		}
		args = append(args, "--grpc-addr", ep.GRPC)
	}
	args = append(append(append(args, s.cfg.topicArgs()...), s.cfg.CommonArgs...), s.cfg.EgressArgs...)
	if s.cfg.EgressInstanceArgs != nil {
		args = append(args, s.cfg.EgressInstanceArgs(i)...)
	}
	s.mu.Lock()
	if i == 0 {
		s.EgressURL, s.EgressAdminURL, s.EgressGRPC = ep.URL, ep.AdminURL, ep.GRPC
	}
	setEndpoint(&s.Egresses, i, ep)
	s.mu.Unlock()
	s.add(ep.Name, args, httpReady(ep.AdminURL+"/readyz", s.cfg.ReadyTimeout))
	return s.Start(ctx, ep.Name)
}

// startIngress starts ingress instance i (from 0).
func (s *Stack) startIngress(ctx context.Context, i int) error {
	fixed := i == 0 && s.cfg.IngressPort+s.cfg.IngressAdminPort+s.cfg.IngressGRPCPort != 0
	return s.retryPorts(ctx, fixed, func() error { return s.startIngressOnce(ctx, i) })
}

func (s *Stack) startIngressOnce(ctx context.Context, i int) error {
	addr, err := s.addr(firstPort(s.cfg.IngressPort, i))
	if err != nil {
		return err
	}
	ep := Endpoint{Name: instanceName(ProcIngress, i), URL: "http://" + addr}
	if !s.cfg.NoIngressGRPC {
		if ep.GRPC, err = s.addr(firstPort(s.cfg.IngressGRPCPort, i)); err != nil {
			return err
		}
	}
	admin, err := s.addr(firstPort(s.cfg.IngressAdminPort, i))
	if err != nil {
		return err
	}
	ep.AdminURL = "http://" + admin
	args := append([]string{"--addr", addr, "--admin-addr", admin, "--grpc-addr", ep.GRPC, "--brokers", s.brokersOf(ProcIngress), "--tenants", s.TenantsFile,
		"--router-group", s.cfg.RouterGroup}, s.cfg.topicArgs()...)
	args = append(append(args, s.cfg.CommonArgs...), s.cfg.IngressArgs...)
	if s.cfg.IngressInstanceArgs != nil {
		args = append(args, s.cfg.IngressInstanceArgs(i)...)
	}
	s.mu.Lock()
	if i == 0 {
		s.IngressURL, s.IngressGRPC, s.IngressAdminURL = ep.URL, ep.GRPC, ep.AdminURL
	}
	setEndpoint(&s.Ingresses, i, ep)
	s.mu.Unlock()
	s.add(ep.Name, args, httpReady(ep.AdminURL+"/readyz", s.cfg.ReadyTimeout))
	return s.Start(ctx, ep.Name)
}

// addr returns 127.0.0.1:port, or a free loopback port's address for 0.
func (s *Stack) addr(port int) (string, error) {
	if port == 0 {
		ps, err := FreePorts(1)
		if err != nil {
			return "", err
		}
		port = ps[0]
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}

// add adds the named process, or replaces its arguments and readiness
// check (a start again on other ports) keeping its place in the order.
func (s *Stack) add(name string, args []string, ready func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.procs[name]; !ok {
		s.order = append(s.order, name)
	}
	s.procs[name] = &proc{name: name, args: args, ready: ready}
}

// errExitedEarly marks a process that exited before it was ready.
var errExitedEarly = errors.New("exited before it was ready")

// startAttempts bounds the starts of an instance on free ports: a port
// found free a moment ago can be taken by another program before the
// process binds it, and the process then exits at once.
const startAttempts = 3

// retryPorts runs start, which picks free ports and starts a process,
// again while the process exits before it is ready (at most startAttempts
// times). fixed says a configured port is among them: then once only.
func (s *Stack) retryPorts(ctx context.Context, fixed bool, start func() error) error {
	for attempt := 1; ; attempt++ {
		err := start()
		if err == nil || fixed || attempt == startAttempts || !errors.Is(err, errExitedEarly) || ctx.Err() != nil {
			return err
		}
		s.cfg.Logger.Warn("process exited before it was ready; starting it on other free ports", "attempt", attempt, "err", err)
	}
}

// setEndpoint sets (*eps)[i], appending when i is the next index.
func setEndpoint(eps *[]Endpoint, i int, ep Endpoint) {
	if i < len(*eps) {
		(*eps)[i] = ep
		return
	}
	*eps = append(*eps, ep)
}

// output opens where name's output goes and returns a function that
// closes it.
func (s *Stack) output(name string) (io.Writer, func(), error) {
	if s.cfg.Output != nil {
		return s.cfg.Output(name), func() {}, nil
	}
	f, err := os.OpenFile(s.LogFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// LogFile is where name's output goes without Config.Output.
func (s *Stack) LogFile(name string) string { return filepath.Join(s.cfg.Dir, name+".log") }

func (s *Stack) seeLog(name string) string {
	if s.cfg.Output != nil {
		return ""
	}
	return " (see " + s.LogFile(name) + ")"
}

// Start starts the named process (again) with its arguments and waits
// until it is ready. For a node of Config.Cluster (kafka-N) it starts the
// node and waits until the cluster has all its brokers again.
func (s *Stack) Start(ctx context.Context, name string) error {
	if i, ok := s.kafkaNode(name); ok {
		if err := s.cfg.Cluster.StartNode(i); err != nil {
			return err
		}
		return s.cfg.Cluster.WaitReady(ctx, s.cfg.Cluster.Nodes())
	}
	s.mu.Lock()
	p := s.procs[name]
	if p == nil {
		s.mu.Unlock()
		return fmt.Errorf("stack: no process %q", name)
	}
	if p.cmd != nil && !p.exited() {
		s.mu.Unlock()
		return fmt.Errorf("stack: %s is running", name)
	}
	if name == ProcDevbroker {
		os.Remove(filepath.Join(s.cfg.Dir, "devbroker.ready"))
	}
	out, closeOut, err := s.output(name)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	// Never cancelled by a context: Stop, Kill and Close end it by PID.
	cmd := exec.Command(filepath.Join(s.cfg.Bin, binaryOf(name)), p.args...) //nolint:noctx // see above
	cmd.Env = s.env(binaryOf(name))
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a Ctrl-C at the terminal reaches only the
	// launcher, which stops the services in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		closeOut()
		s.mu.Unlock()
		return fmt.Errorf("stack: start %s: %w", name, err)
	}
	p.cmd, p.done, p.killed = cmd, make(chan struct{}), false
	done := p.done
	go func() { // owned by done: ends when the process does
		err := cmd.Wait()
		closeOut()
		s.mu.Lock()
		p.err = err
		s.mu.Unlock()
		close(done)
	}()
	s.mu.Unlock()
	// The wait for readiness ends when the process does: a process that
	// exits (a port taken, a bad flag) is reported at once.
	readyCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // ends when the process or the wait does
		select {
		case <-done:
			cancel()
		case <-readyCtx.Done():
		}
	}()
	if err := p.ready(readyCtx); err != nil {
		if p.exited() && ctx.Err() == nil {
			s.mu.Lock()
			exitErr := p.err
			s.mu.Unlock()
			return fmt.Errorf("stack: %s %w (%s)%s", name, errExitedEarly, fmt.Sprint(exitErr), s.seeLog(name))
		}
		return fmt.Errorf("stack: %s not ready: %w%s", name, err, s.seeLog(name))
	}
	return nil
}

// binaryOf maps a process name to its binary (router-worker-2 runs
// router-worker, ingress-2 ingress).
func binaryOf(name string) string {
	for _, p := range []string{ProcRouter, ProcEgress, ProcIngress} {
		if name == p || strings.HasPrefix(name, p+"-") {
			return p
		}
	}
	return name
}

func (s *Stack) kafkaNode(name string) (int, bool) {
	if s.cfg.Cluster == nil {
		return 0, false
	}
	n, ok := strings.CutPrefix(name, "kafka-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	if err != nil || i < 1 || i > s.cfg.Cluster.Nodes() {
		return 0, false
	}
	return i - 1, true
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (s *Stack) running(name string) (*proc, error) {
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	if p == nil || p.cmd == nil {
		return nil, fmt.Errorf("stack: %s was not started", name)
	}
	if p.exited() {
		return nil, fmt.Errorf("stack: %s had already exited", name)
	}
	return p, nil
}

// Kill sends SIGKILL to the named process (by its PID) and waits for it.
func (s *Stack) Kill(name string) error {
	if i, ok := s.kafkaNode(name); ok {
		return s.cfg.Cluster.Kill(i)
	}
	p, err := s.running(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	p.killed = true
	s.mu.Unlock()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Stop sends SIGTERM to the named process and waits up to timeout for it to
// exit (then kills it). It returns the process's exit error.
func (s *Stack) Stop(name string, timeout time.Duration) error {
	p, err := s.running(name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	p.killed = true
	s.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		s.mu.Lock()
		defer s.mu.Unlock()
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("stack: %s did not exit within %v of SIGTERM", name, timeout)
	}
}

// KillRestart kills the named process with SIGKILL, waits down, then
// starts it again and waits until it is ready.
func (s *Stack) KillRestart(ctx context.Context, name string, down time.Duration) error {
	if err := s.Kill(name); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	return s.Start(context.WithoutCancel(ctx), name)
}

// PIDs returns the running processes' PIDs by name, with the nodes of
// Config.Cluster.
func (s *Stack) PIDs() map[string]int {
	out := map[string]int{}
	if c := s.cfg.Cluster; c != nil {
		for i := range c.Nodes() {
			if pid := c.PID(i); pid > 0 {
				out["kafka-"+strconv.Itoa(i+1)] = pid
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, p := range s.procs {
		if p.cmd != nil && !p.exited() {
			out[name] = p.cmd.Process.Pid
		}
	}
	return out
}

// Exited returns the names of processes that were started and are not
// running now.
func (s *Stack) Exited() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, name := range s.order {
		if p := s.procs[name]; p.cmd != nil && p.exited() {
			out = append(out, name)
		}
	}
	return out
}

// BrokerProcess names the process that is a Kafka broker and that Kill
// can crash: devbroker, kafka-1 of Config.Cluster, or "" for an external
// cluster the stack does not run.
func (s *Stack) BrokerProcess() string {
	switch {
	case s.cfg.Brokers == "":
		return ProcDevbroker
	case s.cfg.Cluster != nil:
		return "kafka-1"
	}
	return ""
}

// Names returns the stack's processes in start order.
func (s *Stack) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// Close stops every running process in reverse start order: SIGTERM, then
// SIGKILL after 10 seconds. An external cluster is left running.
func (s *Stack) Close() {
	s.mu.Lock()
	s.stopping = true
	order := append([]string(nil), s.order...)
	s.mu.Unlock()
	for i := len(order) - 1; i >= 0; i-- {
		if _, err := s.running(order[i]); err != nil {
			continue
		}
		if err := s.Stop(order[i], 10*time.Second); err != nil {
			s.cfg.Logger.Warn("stop", "process", order[i], "err", err)
		}
	}
}

// Supervise restarts every process that exits on its own (not by Kill,
// Stop or Close) until ctx ends: after 1s, doubling up to 30s while it
// keeps crashing within a minute of its start. Each exit and restart is
// logged. It returns when ctx ends.
func (s *Stack) Supervise(ctx context.Context) {
	type state struct {
		backoff time.Duration
		started time.Time
	}
	states := map[string]*state{}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, name := range s.Names() {
			s.mu.Lock()
			p := s.procs[name]
			crashed := p.cmd != nil && p.exited() && !p.killed && !s.stopping
			exitErr := p.err
			s.mu.Unlock()
			if !crashed {
				continue
			}
			st := states[name]
			if st == nil {
				st = &state{}
				states[name] = st
			}
			if st.backoff == 0 || time.Since(st.started) > time.Minute {
				st.backoff = time.Second
			} else {
				st.backoff = min(2*st.backoff, 30*time.Second)
			}
			s.cfg.Logger.Warn("process exited on its own; restarting", "process", name, "exit", fmt.Sprint(exitErr), "backoff", st.backoff.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(st.backoff):
			}
			st.started = time.Now()
			if err := s.Start(ctx, name); err != nil {
				s.cfg.Logger.Error("restart failed", "process", name, "err", err)
				continue
			}
			s.cfg.Logger.Info("restarted", "process", name, "pid", s.PIDs()[name])
		}
	}
}

// FreePorts returns n loopback TCP ports that were free a moment ago (all
// held open together, so they differ).
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a momentary bind to pick a free port
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func waitFor(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func httpReady(url string, timeout time.Duration) func(context.Context) error {
	return func(ctx context.Context) error { return WaitHTTP(ctx, url, timeout) }
}

// WaitHTTP waits until url answers 200, at most timeout (or until ctx
// ends), asking every 50 ms.
func WaitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	return waitFor(ctx, timeout, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
}
