package apptest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// DevKey is the API key of the development tenant in the repository's
// tenants.yaml, which every stack's ingress and egress use.
const DevKey = "sk-switchboard-dev"

// StackOptions shape a local stack.
type StackOptions struct {
	// ModelLatency is modelsim's base latency. Default 5ms.
	ModelLatency time.Duration
	// Routers is how many router-worker processes run. Default 1.
	Routers int
	// ModelJitter is modelsim's uniform jitter. Default 0.
	ModelJitter time.Duration
	// RouterArgs are extra flags for every router-worker.
	RouterArgs []string
	// IngressArgs are extra flags for ingress.
	IngressArgs []string
	// ReadyTimeout bounds each service's start. Default 60s.
	ReadyTimeout time.Duration
	// Brokers, when set, are an external Kafka cluster (e.g. a container)
	// used instead of starting a devbroker.
	Brokers string
	// TopicsFile, when set, is the topics.yaml every binary uses instead of
	// the one built in (e.g. replication factor 1 for a one-broker cluster).
	TopicsFile string
}

// Stack is a running local stack: devbroker, modelsim, router-workers,
// egress and ingress, each a process on its own loopback ports.
type Stack struct {
	Dir         string
	Brokers     string
	IngressURL  string
	IngressGRPC string // host:port of ingress's gRPC listener
	EgressURL   string
	ModelsimURL string
	TenantsFile string // the tenants file of ingress and egress (the repository's tenants.yaml)
	Devbroker   *Proc  // nil with an external cluster (StackOptions.Brokers)
	Modelsim    *Proc
	Routers     []*Proc
	RouterURLs  []string // each router-worker's admin listener (/metrics, /healthz, /readyz) base URL, as Routers
	Egress      *Proc
	Ingress     *Proc
	bin         map[string]string
	t           testing.TB
	backends    string
	routerArgs  []string

	// IngressAdminURL and EgressAdminURL are the base URLs of their admin
	// listeners (/metrics, /healthz, /readyz).
	IngressAdminURL, EgressAdminURL string
}

// topicsArgs are the --topics-file flag, when the stack has one.
func topicsArgs(file string) []string {
	if file == "" {
		return nil
	}
	return []string{"--topics-file", file}
}

// StartStack starts a stack from the binaries in bin (see Build) and waits
// until every service is ready. Cleanup stops it.
func StartStack(t testing.TB, bin map[string]string, opts StackOptions) *Stack {
	t.Helper()
	if opts.ModelLatency == 0 {
		opts.ModelLatency = 5 * time.Millisecond
	}
	if opts.Routers == 0 {
		opts.Routers = 1
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	ctx := t.Context()
	s := &Stack{Dir: t.TempDir(), bin: bin, t: t, routerArgs: append(topicsArgs(opts.TopicsFile), opts.RouterArgs...)}
	brokers := opts.Brokers
	if brokers == "" {
		ready := filepath.Join(s.Dir, "devbroker.ready")
		s.Devbroker = Start(t, "devbroker", bin["devbroker"], "--ports", "0,0,0",
			"--data-dir", filepath.Join(s.Dir, "kafka"), "--ready-file", ready)
		var err error
		if brokers, err = WaitFile(ready, opts.ReadyTimeout); err != nil {
			t.Fatalf("devbroker: %v", err)
		}
	}
	s.Brokers = brokers

	topics := Start(t, "topics", bin["topics"], append([]string{"--brokers", brokers}, topicsArgs(opts.TopicsFile)...)...)
	select {
	case <-topics.done:
		if topics.err != nil {
			t.Fatalf("topics: %v\n%s", topics.err, topics.Output())
		}
	case <-time.After(opts.ReadyTimeout):
		t.Fatalf("topics did not finish within %v", opts.ReadyTimeout)
	}

	simPort := FreePort(t)
	s.ModelsimURL = fmt.Sprintf("http://127.0.0.1:%d", simPort)
	s.Modelsim = Start(t, "modelsim", bin["modelsim"], "--addr", fmt.Sprintf("127.0.0.1:%d", simPort),
		"--latency", opts.ModelLatency.String(), "--jitter", opts.ModelJitter.String())
	s.backends = filepath.Join(s.Dir, "backends.yaml")
	backends := fmt.Sprintf("backends:\n  - name: modelsim\n    base_url: %s/v1\n    models: [sim]\n    max_concurrency: 64\n    timeout: 30s\n", s.ModelsimURL)
	if err := os.WriteFile(s.backends, []byte(backends), 0o644); err != nil {
		t.Fatal(err)
	}
	for range opts.Routers {
		s.StartRouter()
	}
	egPort, inPort := FreePort(t), FreePort(t)
	s.EgressURL = fmt.Sprintf("http://127.0.0.1:%d", egPort)
	s.IngressURL = fmt.Sprintf("http://127.0.0.1:%d", inPort)
	s.IngressGRPC = fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	egAdmin, inAdmin := FreePort(t), FreePort(t)
	s.EgressAdminURL = fmt.Sprintf("http://127.0.0.1:%d", egAdmin)
	s.IngressAdminURL = fmt.Sprintf("http://127.0.0.1:%d", inAdmin)
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	s.TenantsFile = filepath.Join(root, "tenants.yaml")
	s.Egress = Start(t, "egress", bin["egress"], append([]string{"--addr", fmt.Sprintf("127.0.0.1:%d", egPort),
		"--admin-addr", fmt.Sprintf("127.0.0.1:%d", egAdmin), "--brokers", brokers,
		"--tenants", s.TenantsFile}, topicsArgs(opts.TopicsFile)...)...)
	s.Ingress = Start(t, "ingress", bin["ingress"], append(append([]string{"--addr", fmt.Sprintf("127.0.0.1:%d", inPort),
		"--admin-addr", fmt.Sprintf("127.0.0.1:%d", inAdmin), "--brokers", brokers,
		"--grpc-addr", s.IngressGRPC, "--tenants", s.TenantsFile}, topicsArgs(opts.TopicsFile)...), opts.IngressArgs...)...)

	for _, u := range []string{s.ModelsimURL + "/healthz", s.EgressAdminURL + "/readyz", s.IngressAdminURL + "/readyz"} {
		if err := WaitHTTP(ctx, u, opts.ReadyTimeout); err != nil {
			t.Fatalf("stack not ready: %v", err)
		}
	}
	return s
}

// StartRouter starts one more router-worker and waits until it is ready.
func (s *Stack) StartRouter() *Proc {
	s.t.Helper()
	port := FreePort(s.t)
	name := "router-worker-" + strconv.Itoa(len(s.Routers)+1)
	args := append([]string{"--admin-addr", fmt.Sprintf("127.0.0.1:%d", port),
		"--brokers", s.Brokers, "--backends", s.backends, "--shutdown-timeout", "10s"}, s.routerArgs...)
	p := Start(s.t, name, s.bin["router-worker"], args...)
	if err := WaitHTTP(context.WithoutCancel(s.t.Context()), fmt.Sprintf("http://127.0.0.1:%d/readyz", port), time.Minute); err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
	s.Routers = append(s.Routers, p)
	s.RouterURLs = append(s.RouterURLs, fmt.Sprintf("http://127.0.0.1:%d", port))
	return p
}
