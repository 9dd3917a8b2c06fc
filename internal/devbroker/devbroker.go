// Package devbroker is Switchboard's embedded default broker: a kfake cluster
// (franz-go's in-process Kafka) listening on 127.0.0.1, optionally keeping its
// data in a directory so that a restart finds the topics, records and
// committed offsets it had. `make run` starts it (cmd/devbroker) before the
// services, so the whole stack runs on one machine with no external Kafka.
//
// It is for development and tests, not production: kfake keeps every
// partition of every topic in one process, "replicas" share that process, and
// nothing guards a data directory against two brokers using it at once.
package devbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DefaultPorts returns the ports the broker listens on when Config.Ports is
// empty: three brokers on 19092, 19093 and 19094.
func DefaultPorts() []int {
	return []int{19092, 19093, 19094}
}

// DefaultBrokerConfigs returns the broker-level configs the broker starts
// with unless Config.BrokerConfigs overrides them. They suit development:
// group.min.session.timeout.ms is lowered from Kafka's 6s to 500ms so tests
// and local runs can use short consumer group sessions.
func DefaultBrokerConfigs() map[string]string {
	return map[string]string{
		"group.min.session.timeout.ms": "500",
	}
}

// Config configures a [Broker]. The zero value is a three-broker cluster on
// the default ports, kept in memory.
type Config struct {
	// Ports lists one port per broker, each bound on 127.0.0.1 only. A 0
	// picks a free port (see [Broker.Addrs]). Empty means [DefaultPorts].
	Ports []int
	// DataDir is where the cluster keeps its state (topics, records,
	// committed offsets, producer IDs); it is created if missing and
	// reloaded on start. Empty keeps everything in memory. The data does
	// not depend on the ports: a restart on other ports finds it.
	DataDir string
	// SyncWrites fsyncs every produced batch before acknowledging it.
	// Without it writes reach the OS page cache and are synced on segment
	// roll and on Close, so a clean stop loses nothing but a crash can.
	SyncWrites bool
	// BrokerConfigs are broker-level configs set over
	// [DefaultBrokerConfigs]; an empty value removes a default. kfake
	// accepts only the configs it knows (see kfake.BrokerConfigs) and
	// silently keeps unknown keys without effect.
	BrokerConfigs map[string]string
	// Logger receives the broker's logs; nil discards them. kfake's own
	// messages are logged with component=kfake: its warnings and errors
	// at their level, its informational messages at debug and its debug
	// messages below debug, so that at the usual info level only what
	// needs attention appears.
	Logger *slog.Logger
}

// Validate reports whether the config can start a broker: every port lies
// in 0..65535 and no non-zero port is listed twice.
func (c *Config) Validate() error {
	var errs []error
	seen := make(map[int]bool, len(c.Ports))
	for i, p := range c.Ports {
		switch {
		case p < 0 || p > 65535:
			errs = append(errs, fmt.Errorf("ports[%d]: %d is not a port (0..65535)", i, p))
		case p != 0 && seen[p]:
			errs = append(errs, fmt.Errorf("ports[%d]: %d is listed twice", i, p))
		}
		seen[p] = true
	}
	for k := range c.BrokerConfigs {
		if k == "" {
			errs = append(errs, errors.New("broker configs: empty key"))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("devbroker config: %w", errors.Join(errs...))
	}
	return nil
}

// Broker is a running kfake cluster. Its methods are safe for concurrent
// use.
type Broker struct {
	cluster *kfake.Cluster
	addrs   []string
	logger  *slog.Logger
}

// New validates cfg and starts the cluster: when New returns, every broker
// accepts connections on its address (see [Broker.Addrs]). If cfg.DataDir
// holds state from an earlier run, that state is loaded first. Stop the
// broker with [Broker.Close] or by cancelling [Broker.Run]'s context.
func New(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ports := cfg.Ports
	if len(ports) == 0 {
		ports = DefaultPorts()
	}
	bcfgs := DefaultBrokerConfigs()
	maps.Copy(bcfgs, cfg.BrokerConfigs)

	opts := []kfake.Opt{
		kfake.NumBrokers(len(ports)),
		kfake.Ports(ports...), // kfake binds 127.0.0.1:<port>
		kfake.ClusterID("switchboard-devbroker"),
		kfake.BrokerConfigs(bcfgs),
		kfake.WithLogger(kfakeLogger{logger.With("component", "kfake")}),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start devbroker on ports %v: %w", ports, err)
	}
	return &Broker{cluster: c, addrs: c.ListenAddrs(), logger: logger}, nil
}

// Addrs returns the brokers' host:port addresses, in the order of
// Config.Ports, with free ports resolved.
func (b *Broker) Addrs() []string {
	return slices.Clone(b.addrs)
}

// Run blocks until ctx is done, then closes the broker (see [Broker.Close])
// and returns nil: a cancelled context is how a broker is asked to stop.
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	b.logger.Info("devbroker stopping", "brokers", strings.Join(b.addrs, ","))
	b.Close()
	return nil
}

// Close stops the brokers and, with a data directory, writes the cluster's
// state to it and syncs it, so that the next start finds everything that
// was acknowledged. Close may be called more than once.
func (b *Broker) Close() {
	b.cluster.Close()
}
