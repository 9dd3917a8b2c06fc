// Command egress streams results to clients as Server-Sent Events,
// WebSocket messages and gRPC streams, and delivers them to webhooks.
// See README.md for the API and docs/ARCHITECTURE.md for how it fits.
package main

import (
	"context"
	"time"

	"github.com/switchboard-llm/switchboard/internal/acl"
	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/egress"
)

func main() {
	cfg, tenantsFile, printSecret := egress.Defaults(), "", ""
	consoleOn, consoleGroup := true, acl.DefaultRouterGroup
	d := daemon.New(daemon.Program{Name: "egress", Kafka: true, Topics: true, Provision: true, Trace: true, AdminAddr: "127.0.0.1:8085",
		OneShot: func() bool { return printSecret != "" }})
	f, w := d.Flags, &cfg.Webhooks
	f.String(&cfg.Addr, "addr", "HTTP listen address of the SSE and WebSocket streams (the public API)")
	f.String(&cfg.GRPCAddr, "grpc-addr", "gRPC listen address (switchboard.v1.Egress); empty: no gRPC")
	f.Duration(&cfg.ReplayWindow, "replay-window", "how far back a new stream without a cursor is replayed")
	f.Bool(&cfg.ReadCommitted, "read-committed", "read results read_committed: every result, chunks too, waits for the transactions open before it (not needed for router-worker --exactly-once: streams show its results only once committed either way)")
	f.Int64(&cfg.RecentBytes, "recent-bytes", "memory bound of the index of recent results that new streams replay from (negative: none, every replay reads Kafka)")
	f.Int(&cfg.ReplayReaders, "replay-readers", "Kafka clients shared by the streams that resume from before the index of recent results (one partition each at a time)")
	f.Int64(&cfg.ReplayReaderBytes, "replay-reader-bytes", "memory bound of the events one replay reader has read and its streams not yet written; above it the reader waits")
	f.Int(&cfg.SubscriberBuffer, "subscriber-buffer", "events held for a slow subscriber before it is disconnected")
	f.Duration(&cfg.WriteTimeout, "write-timeout", "bound of one write to a stream, and of the wait for a non-reading client's backlog to fall (then end: overflow)")
	f.Int(&cfg.MaxStreamsPerTenant, "max-streams-per-tenant", "open streams of one tenant on this instance; more get 429 (negative: no cap)")
	f.Int(&cfg.MaxStreamsPerConversation, "max-streams-per-conversation", "open streams of one conversation on this instance; more get 429 (negative: no cap)")
	f.Int(&cfg.SendBuffer, "send-buffer", "kernel send buffer (SO_SNDBUF) of every HTTP connection, bytes (negative: the system's default)")
	f.Int(&cfg.MaxUnsentBytes, "max-unsent-bytes", "unread bytes a stream's socket may hold before the stream waits and then ends with overflow (0: half of --send-buffer, or 1 MiB with the system's; negative: no check)")
	f.Int(&cfg.MaxConnsPerAddr, "max-conns-per-addr", "open HTTP connections of one client IP address; more are closed on accept (0: no cap)")
	f.String(&tenantsFile, "tenants", "tenants file, the same as ingress's (API key digests, webhook endpoints; see tenants.yaml): every stream needs an API key and sees only its tenant's results; required unless --allow-anonymous")
	f.Duration(&cfg.TenantsCheckInterval, "tenants-check-interval", "how often the tenants file is checked for changes; also reloaded on SIGHUP (negative: only then)")
	f.Bool(&cfg.AllowAnonymous, "allow-anonymous", "run without --tenants: every stream open to anyone who can reach egress (a warning at every start)")
	f.List(&cfg.CORSOrigins, "cors-origins", "comma-separated origins (scheme://host[:port], or *) whose browser pages may read the SSE streams; empty: none")
	f.List(&cfg.WSOriginPatterns, "ws-origins", "comma-separated origin patterns allowed to open WebSocket streams from browsers (besides the host itself)")
	f.OnOff(&consoleOn, "console", "serve the live console page at /console on --admin-addr (on or off; docs/OPERATIONS.md)")
	f.String(&consoleGroup, "router-group", "router-worker consumer group whose members and lag the console shows")
	webhookFlags(f, w, &printSecret)
	d.Main(func(ctx context.Context, env *daemon.Env) error {
		if printSecret != "" {
			return printWebhookSecret(env, printSecret, tenantsFile)
		}
		cfg.CursorSecret = []byte(env.Getenv("SWITCHBOARD_CURSOR_SECRET"))
		var err error
		if w.Enabled {
			if w.Secret, err = globalSecret(env.Getenv); err != nil {
				return err
			}
		}
		cfg.TenantsFile, cfg.ReloadSignal = tenantsFile, env.Reloads
		if w.Enabled { // only webhook delivery needs the tenants' secrets
			cfg.TenantsGetenv = env.Getenv
		}
		cfg.Kafka, cfg.Topics, cfg.Logger, cfg.Registry = env.Kafka, env.Topics, env.Logger, env.Registry
		if err := acl.CheckStart(ctx, env.Kafka, acl.RoleEgress, acl.Params{Topics: env.Topics, Webhooks: w.Enabled,
			WebhookGroup: w.Group, RouterGroup: consoleGroup, NoConsole: !consoleOn}, 20*time.Second); err != nil {
			return err
		}
		eg, err := egress.New(cfg)
		if err != nil {
			return err
		}
		env.SetStatus(eg.Ready)
		if !consoleOn || env.AdminAddr == "" {
			return eg.Run(ctx)
		}
		return runWithConsole(ctx, env, eg, consoleGroup, w)
	})
}
