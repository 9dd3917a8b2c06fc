// Command ingress accepts requests over HTTP, WebSocket and gRPC and
// produces them to Kafka.
// See README.md for the API and docs/ARCHITECTURE.md for how it fits.
package main

import (
	"context"
	"errors"
	"time"

	"github.com/switchboard-llm/switchboard/internal/acl"
	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/ingress"
)

func main() {
	d := daemon.New(daemon.Program{Name: "ingress", Kafka: true, Topics: true, Provision: true, Trace: true, AdminAddr: "127.0.0.1:8084"})
	cfg, tenantsFile := define(d.Flags)
	d.Main(func(ctx context.Context, env *daemon.Env) error {
		if *tenantsFile == "" {
			return errors.New("--tenants is required: a file of API key digests (the local stack uses tenants.yaml)")
		}
		cfg.TenantsFile, cfg.ReloadSignal = *tenantsFile, env.Reloads
		cfg.Kafka, cfg.Topics, cfg.Logger, cfg.Registry = env.Kafka, env.Topics, env.Logger, env.Registry
		if err := acl.CheckStart(ctx, env.Kafka, acl.RoleIngress, acl.Params{Topics: env.Topics, RouterGroup: cfg.Admission.Group,
			NoAdmission: cfg.Admission.Disabled}, 20*time.Second); err != nil {
			return err
		}
		in, err := ingress.New(*cfg)
		if err != nil {
			return err
		}
		env.SetReady(in.Ready)
		return in.Run(ctx)
	})
}

// define defines ingress's own settings on f.
func define(f *daemon.Flags) (cfg *ingress.Config, tenantsFile *string) {
	cfg, tenantsFile = new(ingress.Defaults()), new("")
	cfg.GRPCAddr = "127.0.0.1:8083" // the binary serves gRPC unless told not to
	a := &cfg.Admission
	f.String(&cfg.Addr, "addr", "HTTP and WebSocket listen address (the public API)")
	f.String(&cfg.GRPCAddr, "grpc-addr", "gRPC listen address (empty: no gRPC)")
	f.List(&cfg.CORSOrigins, "cors-origins", "comma-separated origins (scheme://host[:port], or *) whose browser pages may call the HTTP API; empty: none")
	f.String(tenantsFile, "tenants", "tenants file mapping API key digests to tenants (required; see tenants.yaml); reloaded on change and on SIGHUP")
	f.Duration(&cfg.TenantsCheckInterval, "tenants-check-interval", "how often the tenants file is checked for changes (negative: only reload on SIGHUP)")
	f.Int64(&cfg.MaxBodyBytes, "max-body-bytes", "largest accepted request body, WebSocket frame or gRPC message")
	f.Int(&cfg.MaxBatchItems, "max-batch-items", "most requests in one POST /v1/messages:batch")
	f.Int(&cfg.MaxInFlight, "max-in-flight", "most requests being produced at once (beyond: 503)")
	f.Duration(&cfg.IdempotencyWindow, "idempotency-window", "how long an Idempotency-Key is remembered")
	f.Duration(&cfg.ProduceTimeout, "produce-timeout", "how long a request waits for Kafka's acknowledgement before a 503")
	f.Duration(&cfg.ProduceLinger, "produce-linger", "producer linger (0: send at once; batches still form while requests are in flight)")
	f.Duration(&cfg.ReadHeaderTimeout, "read-header-timeout", "time a client has to send a request's headers")
	f.Duration(&cfg.BodyTimeout, "body-timeout", "time a client has to send a request's body, after its headers (then 408)")
	f.Duration(&cfg.WriteTimeout, "write-timeout", "time to answer a request, after its headers")
	f.Duration(&cfg.IdleTimeout, "idle-timeout", "close kept-alive connections idle this long")
	f.Int(&cfg.MaxConnsPerAddr, "max-conns-per-addr", "open connections of one client IP address; more are closed on accept (negative: no cap)")
	f.Int(&cfg.MaxConnsPerTenant, "max-conns-per-tenant", "open requests, WebSocket connections and gRPC calls of one tenant; more get 429 (negative: no cap)")
	f.List(&cfg.WebhookAllow, "webhook-allow", "comma-separated webhook targets every tenant may name, besides the tenants file's lists (give egress's --webhook-allow; docs/WEBHOOKS.md)")
	f.Bool(&cfg.OpenAI.Disabled, "no-openai", "turn off the OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models)")
	f.Duration(&cfg.OpenAI.Timeout, "openai-timeout", "how long an OpenAI-compatible call waits for its answer after Kafka acknowledged it (then 504; the request is still processed)")
	f.Int(&cfg.OpenAI.MaxWaiting, "openai-max-waiting", "most OpenAI-compatible calls waiting for their answers at once (beyond: 503)")
	f.Duration(&cfg.StatusInterval, "status-interval", "how often this instance publishes its status record (admission) to the status topic for the console (negative: never)")
	f.Bool(&cfg.SharedLimits.Disabled, "no-shared-limits", "enforce every tenant's whole rate limit on this instance alone, instead of sharing it with the other instances through the presence topic (docs/LIMITS.md)")
	f.Duration(&cfg.SharedLimits.Interval, "limits-interval", "how often this instance publishes its tenants' demand to the presence topic and recomputes its shares of their limits")
	f.String(&cfg.SharedLimits.Instance, "instance-id", "this instance's ID on the presence and status topics, unique among running instances (empty: host name and process ID; on Kubernetes the pod name)", daemon.FromEnv("SWITCHBOARD_INSTANCE_ID"))
	f.Bool(&a.Disabled, "no-admission", "turn off lag-driven admission")
	f.String(&a.Group, "router-group", "router-worker consumer group whose lag drives admission")
	f.Int64(&a.BatchHigh, "batch-lag-high", "total lag (records) above which batch requests are rejected")
	f.Int64(&a.BatchLow, "batch-lag-low", "total lag below which batch requests are admitted again (0: half of --batch-lag-high)")
	f.Int64(&a.InteractiveHigh, "interactive-lag-high", "interactive lag above which interactive requests are rejected")
	f.Int64(&a.InteractiveLow, "interactive-lag-low", "interactive lag below which interactive requests are admitted again (0: half of --interactive-lag-high)")
	f.Duration(&a.InteractiveQueueHigh, "interactive-queue-high", "also shed both lanes while the interactive lag would take longer than this to drain at the group's measured rate, until below half of it; keep it above the model's usual time plus router-worker's --commit-interval (0: off)")
	return cfg, tenantsFile
}
