package ingress

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-llm/switchboard/internal/presence"
	"github.com/switchboard-llm/switchboard/internal/status"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// SharedLimitsConfig configures how the ingress instances of a deployment
// share every tenant's rate limits through the presence topic (package
// presence, docs/LIMITS.md).
type SharedLimitsConfig struct {
	// Disabled makes this instance enforce every tenant's whole limit on
	// its own (N instances then admit up to N × a tenant's rate). A topics
	// file without the presence topic has the same effect.
	Disabled bool
	// Interval is how often the instance publishes its demand and
	// recomputes its shares; others take it as gone three intervals
	// after its last record. Default 1s.
	Interval time.Duration
	// Instance is this instance's ID on the presence topic, unique among
	// the running instances (e.g. the pod name). Default: host name and
	// process ID.
	Instance string
}

func (c *SharedLimitsConfig) setDefaults() {
	if c.Interval == 0 {
		c.Interval = time.Second
	}
	if c.Instance == "" {
		c.Instance = status.DefaultInstance()
	}
}

func (c *SharedLimitsConfig) validate() error {
	if c.Interval < 10*time.Millisecond || c.Interval > time.Minute {
		return errors.New("ingress: the shared limits interval must be between 10ms and 1m")
	}
	if len(c.Instance) > presence.MaxNameBytes {
		return fmt.Errorf("ingress: instance ID longer than %d bytes", presence.MaxNameBytes)
	}
	return nil
}

// shareLimits keeps this instance's shares of the tenants' limits current
// until ctx is done (see package presence). Without the presence topic or
// when disabled, every limit stays whole here, and the log says so.
func (in *Ingress) shareLimits(ctx context.Context) {
	sc := in.cfg.SharedLimits
	if _, ok := in.cfg.Topics.Topic(topicspec.Presence); !ok || sc.Disabled {
		if !sc.Disabled {
			in.log.Warn("the topics file has no presence topic: this instance enforces every tenant's whole rate limit on its own",
				"topic", topicspec.Presence)
		}
		in.metrics.limitsShared.Set(0)
		in.metrics.liveInstances.Set(1)
		return
	}
	m, err := presence.New(presence.Config{
		Topic:    in.cfg.Topics.Name(topicspec.Presence),
		Instance: sc.Instance,
		Interval: sc.Interval,
		Demand:   in.limits.collect,
		Apply:    in.applyShares,
		Logger:   in.log,
		Now:      in.cfg.Now,
	})
	if err == nil {
		untraced := in.cfg.Kafka
		untraced.Tracing = nil
		in.log.Info("sharing tenant limits through the presence topic", "topic", in.cfg.Topics.Name(topicspec.Presence),
			"instance", sc.Instance, "interval", sc.Interval)
		err = m.Run(ctx, untraced.Opts(in.log))
	}
	if err != nil {
		in.log.Warn("not sharing tenant limits: this instance enforces every tenant's whole rate limit on its own", "err", err)
		in.limits.setShares(presence.Even(1, true))
		in.metrics.limitsShared.Set(0)
	}
}

// applyShares installs s and exports it.
func (in *Ingress) applyShares(s presence.Shares) {
	byTenant := in.limits.setShares(s)
	in.metrics.liveInstances.Set(float64(s.Instances))
	if s.Degraded {
		in.metrics.limitsShared.Set(0)
	} else {
		in.metrics.limitsShared.Set(1)
	}
	for name, sh := range byTenant {
		in.metrics.tenantShare.WithLabelValues(name, "requests").Set(sh.Requests)
		in.metrics.tenantShare.WithLabelValues(name, "tokens").Set(sh.Tokens)
	}
}
