package loadtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// DevKey is the local stack's development key (tenants.yaml): the default
// of --api-key and of a stack the load test starts.
const DevKey = "sk-switchboard-dev"

// StackConfig shapes a local stack of the real binaries.
type StackConfig struct {
	// Bin is the directory holding devbroker, topics, modelsim,
	// router-worker, ingress and egress (make build). Required.
	Bin string
	// Dir holds the broker's data and every process's log. Required.
	Dir string
	// ModelLatency, ModelJitter, LongTailFraction and LongTailLatency
	// are modelsim's flags. Defaults 200ms, 20ms, 0, 1500ms.
	ModelLatency, ModelJitter time.Duration
	LongTailFraction          float64
	LongTailLatency           time.Duration
	// BackendConcurrency is the backend's max_concurrency in the
	// generated backends file. Default 2048.
	BackendConcurrency int
	// RouterArgs replace the router-worker's tuning flags. Default:
	// --max-in-flight 2000 --session-timeout 10s, with static membership.
	RouterArgs []string
	// APIKey is the one tenant's key in the tenants file the stack gives
	// ingress and egress (no rate limits). Default DevKey.
	APIKey string
	// ReadyTimeout bounds each process's start. Default 60s.
	ReadyTimeout time.Duration
	Logger       *slog.Logger
}

// Stack is a running local stack: devbroker (three brokers on fixed free
// loopback ports, data on disk so a restart finds it), modelsim, one
// router-worker (static membership, so a restarted worker takes its
// partitions back at once), egress and ingress, each its own process. It
// stops, kills and restarts only processes it started, by PID.
type Stack struct {
	cfg         StackConfig
	Brokers     string
	IngressURL  string
	EgressURL   string
	ModelsimURL string
	// APIKey is the key ingress and egress accept (StackConfig.APIKey).
	APIKey string
	// Tenant is APIKey's tenant in the stack's tenants file.
	Tenant string

	cursorSecret string // egress's, the same for every start

	mu    sync.Mutex
	procs map[string]*stackProc
	order []string
}

type stackProc struct {
	name  string
	args  []string
	ready func(ctx context.Context) error
	cmd   *exec.Cmd
	done  chan struct{}
}

// Names of the stack's processes.
const (
	ProcDevbroker = "devbroker"
	ProcModelsim  = "modelsim"
	ProcRouter    = "router-worker"
	ProcEgress    = "egress"
	ProcIngress   = "ingress"
)

// StackBinaries are the binaries a stack runs, as named in Bin.
func StackBinaries() []string {
	return []string{ProcDevbroker, "topics", ProcModelsim, ProcRouter, ProcEgress, ProcIngress}
}

// Validate reports whether the configuration can start a stack: Bin and
// Dir set, every binary present.
func (c StackConfig) Validate() error {
	if c.Bin == "" || c.Dir == "" {
		return errors.New("stack: bin and dir are required")
	}
	for _, b := range StackBinaries() {
		if _, err := os.Stat(filepath.Join(c.Bin, b)); err != nil {
			return fmt.Errorf("stack: %w (run make build)", err)
		}
	}
	if c.LongTailFraction < 0 || c.LongTailFraction > 1 {
		return fmt.Errorf("stack: long tail fraction %v not in [0, 1]", c.LongTailFraction)
	}
	return nil
}

// StartStack starts every process and waits until each is ready. On error
// it stops what it started.
func StartStack(ctx context.Context, cfg StackConfig) (_ *Stack, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.ModelLatency == 0 {
		cfg.ModelLatency = 200 * time.Millisecond
	}
	if cfg.ModelJitter == 0 {
		cfg.ModelJitter = 20 * time.Millisecond
	}
	if cfg.LongTailLatency == 0 {
		cfg.LongTailLatency = 1500 * time.Millisecond
	}
	if cfg.BackendConcurrency == 0 {
		cfg.BackendConcurrency = 2048
	}
	if cfg.RouterArgs == nil {
		cfg.RouterArgs = []string{"--max-in-flight", "2000", "--session-timeout", "10s", "--instance-id", "loadtest-router-1"}
	}
	if cfg.APIKey == "" {
		cfg.APIKey = DevKey
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, procs: map[string]*stackProc{}, cursorSecret: rand.Text()}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	ports, err := freePorts(ctx, 10)
	if err != nil {
		return nil, err
	}
	var brokers []string
	for _, p := range ports[:3] {
		brokers = append(brokers, "127.0.0.1:"+strconv.Itoa(p))
	}
	s.Brokers = strings.Join(brokers, ",")
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	simAddr, routerAddr, egAddr, inAddr := addr(ports[3]), addr(ports[4]), addr(ports[5]), addr(ports[6])
	s.ModelsimURL, s.EgressURL, s.IngressURL = "http://"+simAddr, "http://"+egAddr, "http://"+inAddr
	egAdmin, inAdmin := addr(ports[8]), addr(ports[9]) // the services' admin listeners (/metrics, /readyz)

	readyFile := filepath.Join(cfg.Dir, "devbroker.ready")
	s.add(ProcDevbroker, []string{"--ports", fmt.Sprintf("%d,%d,%d", ports[0], ports[1], ports[2]),
		"--data-dir", filepath.Join(cfg.Dir, "kafka"), "--ready-file", readyFile, "--log-level", "warn"},
		func(ctx context.Context) error {
			return waitFor(ctx, cfg.ReadyTimeout, func() error {
				b, err := os.ReadFile(readyFile)
				if err == nil && len(strings.TrimSpace(string(b))) == 0 {
					err = errors.New("empty ready file")
				}
				return err
			})
		})
	s.add(ProcModelsim, []string{"--addr", simAddr, "--latency", cfg.ModelLatency.String(), "--jitter", cfg.ModelJitter.String(),
		"--long-tail-fraction", strconv.FormatFloat(cfg.LongTailFraction, 'f', -1, 64), "--long-tail-latency", cfg.LongTailLatency.String()},
		httpReady(s.ModelsimURL+"/healthz", cfg.ReadyTimeout))
	backends := filepath.Join(cfg.Dir, "backends.yaml")
	if err := os.WriteFile(backends, fmt.Appendf(nil, "backends:\n  - name: modelsim\n    base_url: %s/v1\n    models: [sim]\n    max_concurrency: %d\n    timeout: 60s\n",
		s.ModelsimURL, cfg.BackendConcurrency), 0o644); err != nil {
		return nil, err
	}
	s.add(ProcRouter, append([]string{"--admin-addr", routerAddr, "--brokers", s.Brokers, "--backends", backends, "--log-level", "warn"}, cfg.RouterArgs...),
		httpReady("http://"+routerAddr+"/readyz", cfg.ReadyTimeout))
	tenants := filepath.Join(cfg.Dir, "tenants.yaml")
	s.Tenant = "loadtest"
	// The load test reads the model's time from the timings of final
	// results: its tenant is shown them.
	if err := os.WriteFile(tenants, fmt.Appendf(nil, "tenants:\n  - name: %s\n    key_sha256: [%s]\n    show: [backend, timings, kafka_positions]\n", s.Tenant, tenant.HashKey(cfg.APIKey)), 0o600); err != nil {
		return nil, err
	}
	s.add(ProcEgress, []string{"--addr", egAddr, "--admin-addr", egAdmin, "--brokers", s.Brokers, "--tenants", tenants, "--log-level", "warn"},
		httpReady("http://"+egAdmin+"/readyz", cfg.ReadyTimeout))
	s.APIKey = cfg.APIKey
	// The load generator is one client address and one tenant with
	// thousands of connections: the per-address and per-tenant connection
	// caps, meant for many clients, are lifted.
	s.add(ProcIngress, []string{"--addr", inAddr, "--admin-addr", inAdmin, "--brokers", s.Brokers, "--grpc-addr", "", "--tenants", tenants, "--log-level", "warn",
		"--max-conns-per-addr", "-1", "--max-conns-per-tenant", "-1"}, httpReady("http://"+inAdmin+"/readyz", cfg.ReadyTimeout))

	if err := s.Start(ctx, ProcDevbroker); err != nil {
		return nil, err
	}
	if err := s.runTopics(ctx); err != nil {
		return nil, err
	}
	for _, name := range []string{ProcModelsim, ProcRouter, ProcEgress, ProcIngress} {
		if err := s.Start(ctx, name); err != nil {
			return nil, err
		}
	}
	cfg.Logger.Info("stack ready", "brokers", s.Brokers, "ingress", s.IngressURL, "egress", s.EgressURL, "modelsim", s.ModelsimURL, "dir", cfg.Dir)
	return s, nil
}

func (s *Stack) add(name string, args []string, ready func(context.Context) error) {
	s.procs[name] = &stackProc{name: name, args: args, ready: ready}
	s.order = append(s.order, name)
}

func (s *Stack) runTopics(ctx context.Context) error {
	log, err := os.OpenFile(filepath.Join(s.cfg.Dir, "topics.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.cfg.Bin, "topics"), "--brokers", s.Brokers)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("stack: topics: %w (see %s)", err, log.Name())
	}
	return nil
}

// Start starts the named process (again) with its arguments and waits
// until it is ready.
func (s *Stack) Start(ctx context.Context, name string) error {
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
	log, err := os.OpenFile(filepath.Join(s.cfg.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	cmd := exec.Command(filepath.Join(s.cfg.Bin, name), p.args...) //nolint:noctx // the stack stops its processes itself, by PID and in order, not when a context ends
	// Every egress of the stack, restarted ones too, opens the cursors of
	// the others (egress reads SWITCHBOARD_CURSOR_SECRET; others ignore it).
	cmd.Env = append(os.Environ(), "SWITCHBOARD_CURSOR_SECRET="+s.cursorSecret)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		s.mu.Unlock()
		return fmt.Errorf("stack: start %s: %w", name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	done := p.done
	go func() { // owned by done: ends when the process does
		_ = cmd.Wait() // a stop, kill or crash; the stack judges the process by its readiness
		log.Close()
		close(done)
	}()
	s.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return fmt.Errorf("stack: %s not ready: %w (see %s)", name, err, filepath.Join(s.cfg.Dir, name+".log"))
	}
	return nil
}

func (p *stackProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL to the named process (by its PID) and waits for it.
func (s *Stack) Kill(name string) error {
	s.mu.Lock()
	p := s.procs[name]
	s.mu.Unlock()
	if p == nil || p.cmd == nil {
		return fmt.Errorf("stack: %s was not started", name)
	}
	if p.exited() {
		return fmt.Errorf("stack: %s had already exited", name)
	}
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// KillRestart kills the named process with SIGKILL, waits down, then
// starts it again and waits until it is ready.
func (s *Stack) KillRestart(ctx context.Context, name string, down time.Duration) error {
	if err := s.Kill(name); err != nil {
		return err
	}
	if !sleepUntil(ctx, time.Now().Add(down)) {
		return ctx.Err()
	}
	return s.Start(context.WithoutCancel(ctx), name)
}

// PIDs returns the running processes' PIDs by name.
func (s *Stack) PIDs() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
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

// Close stops every running process in reverse start order: SIGTERM, then
// SIGKILL after 10 seconds.
func (s *Stack) Close() {
	for i := len(s.order) - 1; i >= 0; i-- {
		s.mu.Lock()
		p := s.procs[s.order[i]]
		s.mu.Unlock()
		if p.cmd == nil || p.exited() {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func freePorts(ctx context.Context, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := new(net.ListenConfig).Listen(ctx, "tcp", "127.0.0.1:0")
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
		if !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

func httpReady(url string, timeout time.Duration) func(context.Context) error {
	return func(ctx context.Context) error {
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
}
