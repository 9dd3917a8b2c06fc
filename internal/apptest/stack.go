package apptest

import (
	"cmp"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
	"github.com/switchboard-llm/switchboard/internal/stack"
)

// DevKey is the API key of the development tenant in the repository's
// tenants.yaml, which every stack's ingress and egress use.
const DevKey = stack.DevKey

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
	// IngressArgs and EgressArgs are extra flags for ingress and egress.
	IngressArgs, EgressArgs []string
	// ReadyTimeout bounds each service's start. Default 60s.
	ReadyTimeout time.Duration
	// Brokers, when set, are an external Kafka cluster (Apache Kafka, local
	// or in a container) used instead of starting a devbroker. Cluster,
	// when set, is that cluster's local nodes (KillKafka can crash one).
	Brokers string
	Cluster *kafkalocal.Cluster
	// TopicsFile, when set, is the topics.yaml every binary uses instead of
	// the one built in (e.g. replication factor 1 for a one-broker cluster).
	TopicsFile string
	// TopicPrefix and RouterGroup, when set, replace the topics' prefix and
	// the router-workers' group, so tests sharing one cluster do not see
	// each other's records and offsets.
	TopicPrefix, RouterGroup string
	// TenantsFile, when set, is ingress's and egress's tenants file instead
	// of the repository's tenants.yaml (a test may rewrite it).
	TenantsFile string
	// KafkaEnv and ACLs are the launcher's (stack.Config): each binary's
	// connection settings on a secured cluster, and the least-privilege
	// ACLs the topics step gives the services' principals.
	KafkaEnv map[string][]string
	ACLs     map[string]string
}

// Stack is a running local stack: devbroker (or an external cluster),
// modelsim, router-workers, egress and ingress, each a process on its own
// loopback ports, started by internal/stack (the launcher `make run` and
// `loadtest --stack` use).
type Stack struct {
	Dir         string
	Brokers     string
	IngressURL  string
	IngressGRPC string // host:port of ingress's gRPC listener
	EgressURL   string
	ModelsimURL string
	TenantsFile string // the tenants file of ingress and egress (the repository's tenants.yaml)
	// TopicPrefix is the topics' prefix (topics.yaml's, "switchboard.",
	// unless StackOptions changed it); RouterGroup the router-workers'
	// consumer group.
	TopicPrefix, RouterGroup string
	Devbroker                *Proc // nil with an external cluster (StackOptions.Brokers)
	Modelsim                 *Proc
	Routers                  []*Proc
	RouterURLs               []string // each router-worker's admin listener (/metrics, /healthz, /readyz) base URL, as Routers
	// IngressAdminURL and EgressAdminURL are the base URLs of their admin
	// listeners (/metrics, /healthz, /readyz).
	IngressAdminURL, EgressAdminURL string
	Egress                          *Proc
	Ingress                         *Proc
	// Launcher is the underlying stack.
	Launcher  *stack.Stack
	t         testing.TB
	topicArgs []string
	mu        sync.Mutex
	outs      map[string]*syncBuffer
}

// Topic returns the full name of a logical topic (e.g. "results").
func (s *Stack) Topic(logical string) string { return s.TopicPrefix + logical }

// TopicArgs are the --topics-file and --topic-prefix flags the stack's
// services run with, for another process on the same topics.
func (s *Stack) TopicArgs() []string { return append([]string(nil), s.topicArgs...) }

// StartStack starts a stack from the binaries in bin (see Build) and waits
// until every service is ready. Cleanup stops it and, when the test
// failed, prints the end of every process's output.
func StartStack(t testing.TB, bin map[string]string, opts StackOptions) *Stack {
	t.Helper()
	if opts.ModelLatency == 0 {
		opts.ModelLatency = 5 * time.Millisecond
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	s := &Stack{Dir: t.TempDir(), t: t, outs: map[string]*syncBuffer{}, TopicPrefix: "switchboard.", RouterGroup: "switchboard-router"}
	if opts.TopicPrefix != "" {
		s.TopicPrefix = opts.TopicPrefix
	}
	if opts.RouterGroup != "" {
		s.RouterGroup = opts.RouterGroup
	}
	s.TenantsFile = cmp.Or(opts.TenantsFile, filepath.Join(root, "tenants.yaml"))
	if opts.TopicsFile != "" {
		s.topicArgs = append(s.topicArgs, "--topics-file", opts.TopicsFile)
	}
	if opts.TopicPrefix != "" {
		s.topicArgs = append(s.topicArgs, "--topic-prefix", opts.TopicPrefix)
	}
	cfg := stack.Config{
		Bin: filepath.Dir(bin["ingress"]), Dir: s.Dir, Brokers: opts.Brokers, Cluster: opts.Cluster,
		TopicsFile: opts.TopicsFile, TopicPrefix: opts.TopicPrefix, RouterGroup: s.RouterGroup,
		ModelLatency: opts.ModelLatency, ModelJitter: opts.ModelJitter,
		BackendConcurrency: 64, BackendTimeout: 30 * time.Second, TenantsFile: s.TenantsFile,
		Routers:    opts.Routers,
		RouterArgs: append([]string{"--shutdown-timeout", "10s"}, opts.RouterArgs...), IngressArgs: opts.IngressArgs, EgressArgs: opts.EgressArgs,
		ReadyTimeout: opts.ReadyTimeout, Output: s.output, CursorSecret: cursorSecret(),
		KafkaEnv: opts.KafkaEnv, ACLs: opts.ACLs,
	}
	st, err := stack.Start(context.WithoutCancel(t.Context()), cfg)
	t.Cleanup(func() {
		if st != nil {
			st.Close()
		}
		if t.Failed() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for name, out := range s.outs {
				t.Logf("---- %s output ----\n%s", name, tail(out.String(), 6000))
			}
		}
	})
	if err != nil {
		t.Fatalf("stack: %v", err)
	}
	s.Launcher = st
	s.Brokers, s.IngressURL, s.IngressGRPC, s.EgressURL, s.ModelsimURL = st.Brokers, st.IngressURL, st.IngressGRPC, st.EgressURL, st.ModelsimURL
	s.IngressAdminURL, s.EgressAdminURL = st.IngressAdminURL, st.EgressAdminURL
	if opts.Brokers == "" {
		s.Devbroker = s.proc(stack.ProcDevbroker)
	}
	s.Modelsim, s.Egress, s.Ingress = s.proc(stack.ProcModelsim), s.proc(stack.ProcEgress), s.proc(stack.ProcIngress)
	for _, name := range st.Names() {
		if strings.HasPrefix(name, stack.ProcRouter) {
			s.Routers = append(s.Routers, s.proc(name))
		}
	}
	s.RouterURLs = append(s.RouterURLs, st.RouterURLs...)
	return s
}

// Outputs returns every process's output so far (the topics runs
// included), by name.
func (s *Stack) Outputs() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]string, len(s.outs))
	for name, b := range s.outs {
		out[name] = b.String()
	}
	return out
}

func (s *Stack) output(name string) io.Writer {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.outs[name]
	if b == nil {
		b = &syncBuffer{}
		s.outs[name] = b
	}
	return b
}

func (s *Stack) proc(name string) *Proc {
	return &Proc{Name: name, st: s.Launcher, out: s.output(name).(*syncBuffer)}
}

// StartRouter starts one more router-worker and waits until it is ready.
func (s *Stack) StartRouter() *Proc {
	s.t.Helper()
	name, err := s.Launcher.AddRouter(context.WithoutCancel(s.t.Context()))
	if err != nil {
		s.t.Fatalf("%s: %v", name, err)
	}
	p := s.proc(name)
	s.Routers = append(s.Routers, p)
	urls := s.Launcher.RouterURLs
	s.RouterURLs = append(s.RouterURLs, urls[len(urls)-1])
	return p
}

// cursorSecret is the egress cursor secret of the processes tests start
// (see CursorSecret).
func cursorSecret() string {
	if v := os.Getenv("SWITCHBOARD_CURSOR_SECRET"); v != "" {
		return v
	}
	return CursorSecret
}
