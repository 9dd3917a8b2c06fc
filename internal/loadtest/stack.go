package loadtest

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-llm/switchboard/internal/stack"
)

// DevKey is the local stack's development key (tenants.yaml): the default
// of --api-key and of a stack the load test starts.
const DevKey = stack.DevKey

// StackConfig shapes a stack the load test starts (internal/stack, the
// launcher `make run` and the end-to-end tests share).
type StackConfig = stack.Config

// Stack is a running stack of the real binaries.
type Stack = stack.Stack

// Names of the stack's processes.
const (
	ProcDevbroker = stack.ProcDevbroker
	ProcModelsim  = stack.ProcModelsim
	ProcRouter    = stack.ProcRouter
	ProcEgress    = stack.ProcEgress
	ProcIngress   = stack.ProcIngress
)

// StartStack starts a stack with the load test's defaults: router-workers
// (Config.Routers, default one) with --max-in-flight 2000, a 10s session
// timeout and static membership, instance IDs loadtest-router-1, -2, …
// (so a restarted worker takes its partitions back at once), modelsim at 200ms ± 20ms, logs at warn, a tenants file of its
// own (tenant "loadtest", no rate limits, shown timings) and ingress's
// connection caps lifted; ingress and egress serve gRPC too (the grpc
// driver and reader).
func StartStack(ctx context.Context, cfg StackConfig) (*Stack, error) {
	if cfg.RouterArgs == nil {
		cfg.RouterArgs = []string{"--max-in-flight", "2000", "--session-timeout", "10s"}
		if cfg.RouterInstanceArgs == nil {
			cfg.RouterInstanceArgs = func(i int) []string { return []string{"--instance-id", fmt.Sprintf("loadtest-router-%d", i+1)} }
		}
	}
	if cfg.ModelLatency == 0 {
		cfg.ModelLatency = 200 * time.Millisecond
	}
	if cfg.ModelJitter == 0 {
		cfg.ModelJitter = 20 * time.Millisecond
	}
	if cfg.Tenant == "" {
		cfg.Tenant = "loadtest"
	}
	if cfg.CommonArgs == nil {
		cfg.CommonArgs = defaultCommonArgs()
	}
	if cfg.IngressArgs == nil {
		cfg.IngressArgs = defaultIngressArgs()
	}
	cfg.NoIngressGRPC, cfg.EgressGRPC = false, true
	return stack.Start(ctx, cfg)
}

// defaultIngressArgs are ingress's flags in a load test's stack unless the
// configuration says otherwise: one client address and one tenant with
// thousands of connections, so the per-address and per-tenant caps, meant
// for many clients, are lifted.
func defaultIngressArgs() []string {
	return []string{"--max-conns-per-addr", "-1", "--max-conns-per-tenant", "-1"}
}

// defaultCommonArgs are the flags every service of a load test's stack
// gets unless the configuration says otherwise.
func defaultCommonArgs() []string { return []string{"--log-level", "warn"} }

// more returns the instances of eps beyond the first.
func more(eps []stack.Endpoint) []Instance {
	var out []Instance
	for _, e := range eps[min(1, len(eps)):] {
		out = append(out, Instance{URL: e.URL, GRPC: e.GRPC})
	}
	return out
}

// stackInstances is how many instances of each service cfg starts.
func stackInstances(cfg StackConfig) stack.Instances {
	return stack.Instances{Ingress: cfg.Ingresses, Router: cfg.Routers, Egress: cfg.Egresses}
}
