// Package kafkaconf builds the franz-go client options every Switchboard
// binary shares: seed brokers, client ID, TLS (with a client certificate:
// mTLS) and SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER, AWS_MSK_IAM, all
// franz-go's pkg/sasl), logging, franz-go's client metrics (kprom, see
// Instrument), and the hooks of telemetry.Tracing that carry trace context
// in record headers. Service packages add their own producer or consumer
// options on top. Check fails a start fast on what retrying cannot fix (a
// refused password, an untrusted certificate); LagCollector exports a
// consumer group's lag. The connection settings (--brokers, --kafka-tls-*,
// --kafka-sasl-*, each with its SWITCHBOARD_ environment variable) are
// defined once, in internal/daemon, for every binary.
//
// Secrets (a password, a token) are never logged: Secret redacts itself,
// errors name files, not their content, and LogAttrs describes a
// connection without them.
package kafkaconf

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/switchboard-llm/switchboard/internal/telemetry"
)

// DefaultBrokers are the devbroker's listeners that `make run` starts.
var DefaultBrokers = []string{"127.0.0.1:19092", "127.0.0.1:19093", "127.0.0.1:19094"}

// Config is how a binary reaches the Kafka cluster.
type Config struct {
	// Brokers are seed broker addresses (host:port). Empty means DefaultBrokers.
	Brokers []string
	// ClientID names the client in broker logs and quotas.
	ClientID string
	// TLS encrypts the connections (and, with a client certificate,
	// authenticates the client). Off by default.
	TLS TLS
	// SASL authenticates the client. None by default.
	SASL SASL
	// NoACLCheck turns off the services' check of their ACLs at start
	// (internal/acl), for an authorizer that does not report authorized
	// operations faithfully.
	NoACLCheck bool
	// Tracing, when not nil, traces every record produced and fetched by
	// the clients built from Opts. Nil: no tracing, no cost.
	Tracing *telemetry.Tracing

	metrics *clientMetrics // set by Instrument
	sec     *security      // set by Load
}

// ParseBrokers splits a comma-separated broker list, dropping empty entries.
func ParseBrokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// Validate checks the broker addresses and the TLS and SASL settings
// (without reading their files; Load does).
func (c Config) Validate() error {
	for _, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			return errors.New("kafka: broker " + b + " needs a host:port form")
		}
	}
	return c.validateSecurity()
}

func (c Config) brokers() []string {
	if len(c.Brokers) == 0 {
		return DefaultBrokers
	}
	return c.Brokers
}

// Opts returns the client options for c. logger receives franz-go's own log
// lines at warn level and above.
func (c Config) Opts(logger *slog.Logger) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.brokers()...),
		kgo.DialTimeout(5 * time.Second),
		kgo.MetadataMinAge(time.Second),
	}
	opts = append(opts, c.securityOpts()...)
	if c.ClientID != "" {
		opts = append(opts, kgo.ClientID(c.ClientID))
	}
	if logger != nil {
		quiet := slog.New(minLevel{logger.Handler(), slog.LevelWarn})
		opts = append(opts, kgo.WithLogger(kslog.New(quiet.With("component", "kafka"))))
	}
	if c.metrics != nil {
		opts = append(opts, kgo.WithHooks(c.metrics))
	}
	if hooks := c.Tracing.KafkaHooks(); len(hooks) > 0 {
		opts = append(opts, kgo.WithHooks(hooks...))
	}
	return opts
}

// minLevel drops records below min: franz-go narrates every metadata
// refresh and group step at info, which drowns the services' own logs.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
