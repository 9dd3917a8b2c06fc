// Command router-worker consumes requests, calls model backends and
// produces results. See README.md and docs/ARCHITECTURE.md.
package main

import (
	"context"
	"time"

	"github.com/switchboard-llm/switchboard/internal/acl"
	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/router"
)

func main() {
	d := daemon.New(daemon.Program{Name: "router-worker", ClientID: "switchboard-router", Kafka: true, Topics: true, Provision: true, Trace: true, AdminAddr: "127.0.0.1:8082"})
	d.Flags.Alias("addr", "admin-addr") // router-worker's only listener was --addr
	cfg := router.Defaults()
	cfg.BackendsFile = "backends.yaml"
	f := d.Flags
	f.String(&cfg.BackendsFile, "backends", "backends file: model servers, models, limits, breakers (see docs/BACKENDS.md); reloaded on change and on SIGHUP")
	f.Duration(&cfg.ReloadInterval, "backends-check-interval", "how often the backends file is checked for changes (0: only reload on SIGHUP)")
	f.String(&cfg.Group, "group", "consumer group")
	f.String(&cfg.GroupProtocol, "group-protocol", "consumer group protocol: classic (cooperative-sticky, assigned by the members; empty means classic) or consumer (KIP-848, assigned by the broker; Kafka 4.0+)")
	f.String(&cfg.InstanceID, "instance-id", "static group membership ID, unique in the group and stable across restarts (e.g. the pod name): a restart within --session-timeout gets the partitions back at once (empty: dynamic member)", daemon.FromEnv("SWITCHBOARD_INSTANCE_ID"))
	f.Int(&cfg.MaxAttempts, "max-attempts", "tries at a request when the backend fails with a retryable error")
	f.Int(&cfg.MaxInFlight, "max-in-flight", "requests in flight at once (all lanes)")
	f.Int(&cfg.BatchMaxInFlight, "batch-max-in-flight", "batch-lane requests in flight at once; the rest of --max-in-flight is reserved for interactive (0: 3/4 of --max-in-flight)")
	f.Int(&cfg.PartitionHighMark, "partition-high-mark", "records waiting or running in one partition before its fetching pauses (resumes at half)")
	f.Bool(&cfg.ExactlyOnce, "exactly-once", "commit terminal results and dead letters with the offsets in Kafka transactions (streamed chunks stay at-least-once)")
	f.String(&cfg.TransactionalID, "transactional-id", "transactional ID for --exactly-once, unique per running worker (default: from --instance-id, else random)")
	f.Duration(&cfg.SessionTimeout, "session-timeout", "how long the group waits for a silent member (crashed, or a stopped static one) before reassigning its partitions")
	f.Duration(&cfg.CommitInterval, "commit-interval", "how often finished work is committed; after a crash, work finished since the last commit runs again (0: 1s, or 100ms with --exactly-once)")
	f.Duration(&cfg.RevokeTimeout, "revoke-timeout", "how long a revoked partition's in-flight requests may run before they are cancelled")
	f.Duration(&cfg.ShutdownTimeout, "shutdown-timeout", "how long a stop waits for in-flight requests")
	f.Duration(&cfg.DedupeWindow, "dedupe-window", "how long, by record timestamp, a requests partition remembers a request ID: a repeat of it at another offset (a repeated Idempotency-Key) is answered with a copy of the first answer, without a model call (negative: repeats are processed again)")
	f.Int(&cfg.DedupeMaxIDs, "dedupe-max-ids", "request IDs remembered per requests partition, the oldest forgotten first")
	f.Int(&cfg.MemoryMaxMessages, "memory-max-messages", "conversations with memory: messages a prompt takes from the history, the request's own included; the oldest turns are dropped first (negative: no bound)")
	f.Int(&cfg.MemoryMaxTokens, "memory-max-tokens", "conversations with memory: estimated tokens (4 bytes each) a prompt takes from the history, the request's own included (negative: no bound)")
	f.Duration(&cfg.MemoryRebuildTimeout, "memory-rebuild-timeout", "bounds reading an assigned partition's conversation histories back from the history topic (the rebalance waits for it; a partition not read in time is read by its first memory request)")
	f.Duration(&cfg.DedupeRebuildTimeout, "dedupe-rebuild-timeout", "bounds each read back from Kafka: an assigned partition's recent request IDs (the rebalance waits for it; what is not reached is not remembered), and a repeat's first answer (not found in time: the repeat is processed)")
	f.Duration(&cfg.StatusInterval, "status-interval", "how often this worker publishes its status record (backends, breakers, in-flight conversations) to the status topic for the console (negative: never)")
	f.Int32(&cfg.FetchMinBytes, "fetch-min-bytes", "bytes a fetch waits for (with --fetch-max-wait): larger batches cost latency, save CPU")
	f.Duration(&cfg.FetchMaxWait, "fetch-max-wait", "longest a fetch waits for --fetch-min-bytes")
	f.Duration(&cfg.ProduceLinger, "produce-linger", "how long results wait to be batched")
	f.String(&cfg.ResultsEncoding, "results-encoding", "how result records are written: protobuf, or json (protojson with content-type application/json, readable by kcat without the schema); every reader decodes both", daemon.FromEnv("SWITCHBOARD_RESULTS_ENCODING"))
	d.Main(func(ctx context.Context, env *daemon.Env) error {
		if cfg.ReloadInterval == 0 {
			cfg.ReloadInterval = -1 // the Config's "never"
		}
		var err error
		if cfg.Routing, err = router.LoadBackends(cfg.BackendsFile); err != nil {
			return err
		}
		cfg.ReloadSignal = env.Reloads
		cfg.Kafka, cfg.Topics, cfg.Logger, cfg.Registry = env.Kafka, env.Topics, env.Logger, env.Registry
		if err := acl.CheckStart(ctx, env.Kafka, acl.RoleRouter, acl.Params{Topics: env.Topics, RouterGroup: cfg.Group,
			ExactlyOnce: cfg.ExactlyOnce, TransactionalID: cfg.TransactionalID}, 20*time.Second); err != nil {
			return err
		}
		r, err := router.New(cfg)
		if err != nil {
			return err
		}
		env.SetStatus(r.Ready)
		return r.Run(ctx)
	})
}
