// Package daemon is how every Switchboard binary starts and stops: the
// services (ingress, router-worker, egress), the development tools
// (devbroker, modelsim) and the command-line tools (topics, redrive,
// loadtest). A main defines its own settings on Flags, with defaults taken
// from its service's Defaults(), and hands a run function to Main; the
// daemon does the rest, the same way everywhere:
//
//   - settings shared by every binary, each defined once here: --log-format,
//     --log-level, --version, and as the program asks for them the Kafka
//     connection (--brokers, TLS --kafka-tls*, SASL --kafka-sasl-*, each
//     with its environment variable SWITCHBOARD_BROKERS,
//     SWITCHBOARD_KAFKA_TLS, …; checked at start, see kafkaconf.Check), the topics file
//     (--topics-file, --topic-prefix, --provision-topics) and the admin
//     listener (--admin-addr, --pprof);
//   - a slog logger, a Prometheus registry, OpenTelemetry tracing (from the
//     standard OTEL_* environment; off when unset);
//   - the admin listener, bound before the program starts its work, serving
//     /metrics, /healthz, /readyz and, with --pprof, /debug/pprof/ apart
//     from the public API;
//   - SIGINT and SIGTERM cancel the run's context; the program drains and
//     returns; a second signal, or a run that outlives --stop-timeout after
//     the first, ends the process with an error.
//
// Supervision uses errgroup: the admin server and the program run as one
// group; the first to fail stops the other, and Main waits for both.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchboard-llm/switchboard/internal/healthcheck"
	"github.com/switchboard-llm/switchboard/internal/httpserve"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// Program describes a binary to the daemon. Only Name is required.
type Program struct {
	// Name is the binary's name, used in errors, --version and (as
	// switchboard-<Name>) the Kafka client ID and the tracing service.
	Name string
	// LogFormat and LogLevel are the logging defaults. Defaults "json" and
	// "info".
	LogFormat, LogLevel string
	// Kafka adds the Kafka connection settings (--brokers).
	Kafka bool
	// ClientID is the Kafka client ID. Default "switchboard-<Name>".
	ClientID string
	// Topics adds --topics-file and --topic-prefix; the run gets the
	// loaded spec in Env.Topics. Provision adds --provision-topics.
	Topics, Provision bool
	// AdminAddr, when set, adds --admin-addr (this is its default) and
	// --pprof: the admin listener. An empty --admin-addr turns it off.
	AdminAddr string
	// Trace starts OpenTelemetry tracing when the environment asks for it.
	Trace bool
	// OneShot, when set, reports after the settings are parsed whether
	// this run is a one-off job (e.g. egress --print-webhook-secret): then
	// no admin listener is bound, so it runs beside a serving instance.
	OneShot func() bool
	// StopTimeout bounds how long the run may take to return after the
	// first signal. Default 60s; the flag --stop-timeout changes it.
	StopTimeout time.Duration
}

// Daemon is a binary being started: its settings, then (in Run) its
// logger, registry, admin listener and run.
type Daemon struct {
	prog  Program
	Flags *Flags

	logFormat, logLevel string
	version             bool
	kafka               kafkaconf.Config
	topicsFile, prefix  string
	provision           bool
	adminAddr           string
	pprof               bool
	stopTimeout         time.Duration
	reloads             chan os.Signal // SIGHUP, under Main
	kafkaWait           time.Duration
}

// New returns the daemon of prog with the shared settings defined; the
// main adds its own to Flags.
func New(prog Program) *Daemon {
	if prog.LogFormat == "" {
		prog.LogFormat = "json"
	}
	if prog.LogLevel == "" {
		prog.LogLevel = "info"
	}
	if prog.ClientID == "" {
		prog.ClientID = "switchboard-" + prog.Name
	}
	if prog.StopTimeout == 0 {
		prog.StopTimeout = 60 * time.Second
	}
	d := &Daemon{prog: prog, Flags: NewFlags(prog.Name),
		logFormat: prog.LogFormat, logLevel: prog.LogLevel, stopTimeout: prog.StopTimeout,
		adminAddr: prog.AdminAddr}
	f := d.Flags
	f.String(&d.logFormat, "log-format", "log format: json or text")
	f.String(&d.logLevel, "log-level", "log level: debug, info, warn or error")
	f.Bool(&d.version, "version", "print the version and exit")
	f.Duration(&d.stopTimeout, "stop-timeout", "after a stop signal, exit with an error if still running after this long")
	if prog.Kafka {
		d.kafka = kafkaconf.Config{Brokers: kafkaconf.DefaultBrokers, ClientID: prog.ClientID}
		d.kafkaWait = 10 * time.Second
		kafkaFlags(f, &d.kafka)
	}
	if prog.Topics {
		f.String(&d.topicsFile, "topics-file", "topics.yaml to use (default: the one built in)")
		f.String(&d.prefix, "topic-prefix", "topic name prefix (default: the topics file's)")
		if prog.Provision {
			f.Bool(&d.provision, "provision-topics", "create or grow the topics from the topics file at start")
		}
	}
	if prog.AdminAddr != "" {
		f.String(&d.adminAddr, "admin-addr", "listen address of /metrics, /healthz, /readyz and (with --pprof) /debug/pprof/; empty: none")
		f.Bool(&d.pprof, "pprof", "serve Go profiles under /debug/pprof/ on --admin-addr")
	}
	return d
}

// kafkaFlags defines the settings of the Kafka connection, once for every
// binary: each flag --kafka-x-y has the environment variable
// SWITCHBOARD_KAFKA_X_Y (docs/OPERATIONS.md lists them all).
func kafkaFlags(f *Flags, c *kafkaconf.Config) {
	env := func(flag string) Option {
		return FromEnv("SWITCHBOARD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_")))
	}
	f.List(&c.Brokers, "brokers", "Kafka seed brokers, comma-separated host:port", env("brokers"))
	t, s := &c.TLS, &c.SASL
	f.OnOff(&t.Enabled, "kafka-tls", "connect to Kafka with TLS (on or off)", env("kafka-tls"))
	f.String(&t.CAFile, "kafka-tls-ca-file", "PEM file of the CAs that sign the brokers' certificates (empty: the system's)", env("kafka-tls-ca-file"))
	f.String(&t.CertFile, "kafka-tls-cert-file", "client certificate (PEM) for mTLS; needs --kafka-tls-key-file", env("kafka-tls-cert-file"))
	f.String(&t.KeyFile, "kafka-tls-key-file", "client private key (PEM) for mTLS", env("kafka-tls-key-file"))
	f.String(&t.ServerName, "kafka-tls-server-name", "name the brokers' certificates must carry (empty: each broker's host)", env("kafka-tls-server-name"))
	f.OnOff(&t.InsecureSkipVerify, "kafka-tls-insecure-skip-verify", "accept any broker certificate (tests only; logged as a warning)", env("kafka-tls-insecure-skip-verify"))
	f.String(&s.Mechanism, "kafka-sasl-mechanism", "SASL mechanism: "+strings.Join(kafkaconf.Mechanisms, ", ")+" (empty: no SASL)", env("kafka-sasl-mechanism"))
	f.String(&s.Username, "kafka-sasl-username", "SASL username (PLAIN, SCRAM)", env("kafka-sasl-username"))
	f.Func("kafka-sasl-password", "", "SASL password (PLAIN, SCRAM); prefer the environment variable or --kafka-sasl-password-file: a flag shows in ps",
		func(v string) error { s.Password = kafkaconf.Secret(v); return nil }, env("kafka-sasl-password"))
	f.String(&s.PasswordFile, "kafka-sasl-password-file", "file holding the SASL password, read at every authentication", env("kafka-sasl-password-file"))
	f.String(&s.OAuthTokenFile, "kafka-sasl-oauth-token-file", "file holding the OAUTHBEARER token, read at every authentication", env("kafka-sasl-oauth-token-file"))
	f.Func("kafka-acl-check", "on", "on a secured connection, check at start that the cluster allows what this binary does (on or off)",
		func(v string) error {
			var on onOffValue
			if err := on.Set(v); err != nil {
				return err
			}
			c.NoACLCheck = !bool(on)
			return nil
		}, env("kafka-acl-check"))
}

// Env is what the daemon hands a run: the parsed shared settings and the
// objects built from them.
type Env struct {
	// Logger is the binary's logger (--log-format, --log-level).
	Logger *slog.Logger
	// Registry holds the metrics served on the admin listener; the Go
	// runtime and process collectors are already on it.
	Registry *prometheus.Registry
	// Kafka is the connection configuration, with tracing when it is on.
	Kafka kafkaconf.Config
	// Topics is the loaded topics spec (Program.Topics).
	Topics *topicspec.Spec
	// TopicsFile and TopicPrefix are the topics settings as given.
	TopicsFile, TopicPrefix string
	// Tracing is nil when tracing is off.
	Tracing *telemetry.Tracing
	// Stdout and Stderr are the process's streams (replaced in tests).
	Stdout, Stderr io.Writer
	// Getenv reads the environment (replaced in tests).
	Getenv func(string) string
	// AdminAddr is the admin listener's address, once bound ("" when off).
	AdminAddr string
	// Reloads receives SIGHUP, every service's signal to reload its
	// files (backends, tenants); nil outside Main (tests).
	Reloads <-chan os.Signal

	ready    atomic.Pointer[func(*http.Request) (string, error)]
	adminMux *http.ServeMux // nil without an admin listener
}

// HandleAdmin serves h for pattern on the admin listener, beside /metrics
// (e.g. egress's /console). It reports false when there is no admin
// listener.
func (e *Env) HandleAdmin(pattern string, h http.Handler) bool {
	if e.adminMux == nil {
		return false
	}
	e.adminMux.Handle(pattern, h)
	return true
}

// SetReady sets what /readyz asks: nil from ready means ready. Until it is
// called /readyz answers 503 "starting".
func (e *Env) SetReady(ready func(*http.Request) error) {
	e.SetStatus(func(r *http.Request) (string, error) { return "", ready(r) })
}

// SetStatus is SetReady with a detail line for /readyz's body (e.g. the
// partitions a group member holds).
func (e *Env) SetStatus(status func(*http.Request) (detail string, err error)) {
	e.ready.Store(&status)
}

func (e *Env) readiness(r *http.Request) (string, error) {
	p := e.ready.Load()
	if p == nil {
		return "", errors.New("starting")
	}
	return (*p)(r)
}

// RunFunc is a binary's work: it returns after ctx is done and its work is
// drained, or with an error.
type RunFunc func(ctx context.Context, env *Env) error

// Main runs the binary with the process's arguments, environment and
// streams, and exits: status 0 after a clean stop (or --help, --version),
// 2 for bad settings, 1 for any other error.
//
// A binary with an admin listener also takes the subcommand healthcheck
// [URL] (internal/healthcheck): it asks URL, by default the default admin
// address's /readyz, and exits 0 on a 200. Container images have no shell,
// so their health probes run the binary itself.
func (d *Daemon) Main(run RunFunc) {
	if len(os.Args) > 1 && os.Args[1] == healthcheck.Command && d.prog.AdminAddr != "" {
		os.Exit(healthcheck.Main(os.Args[2:], "http://"+d.prog.AdminAddr+"/readyz", os.Stdout, os.Stderr))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // after the first signal, a second one kills the process
	d.reloads = make(chan os.Signal, 1)
	signal.Notify(d.reloads, syscall.SIGHUP)
	err := d.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, run)
	stop()
	os.Exit(d.exitCode(err, os.Stderr))
}

// ErrUsage wraps errors of the command line or the environment.
var ErrUsage = errors.New("usage")

// ExitCode makes Main exit with code (not 1) after err.
func ExitCode(code int, err error) error { return &exitError{err, code} }

type exitError struct {
	err  error
	code int
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func (d *Daemon) exitCode(err error, stderr io.Writer) int {
	var ee *exitError
	code := 1
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		code = ee.code
	case errors.Is(err, ErrUsage):
		code = 2
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, d.prog.Name+": ") { // service errors often name the service already
		msg = d.prog.Name + ": " + msg
	}
	fmt.Fprintln(stderr, msg)
	return code
}

// Run is Main without the process: it parses args (and getenv), builds the
// logger, registry, tracing, Kafka configuration and topics spec, binds the
// admin listener, then runs run until ctx is done and run has returned. It
// returns flag.ErrHelp after printing the usage for --help, and nil after
// printing the version for --version.
func (d *Daemon) Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, run RunFunc) error {
	if err := d.Flags.Parse(args, getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			d.Flags.Usage(stderr)
			return err
		}
		return fmt.Errorf("%w: %w (see --help)", ErrUsage, err)
	}
	if d.version {
		fmt.Fprintln(stdout, Version(d.prog.Name))
		return nil
	}
	logger, err := telemetry.NewLogger(stderr, d.logFormat, d.logLevel)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	env := &Env{Logger: logger, Registry: telemetry.NewRegistry(), Kafka: d.kafka, Reloads: d.reloads,
		TopicsFile: d.topicsFile, TopicPrefix: d.prefix, Stdout: stdout, Stderr: stderr, Getenv: getenv}
	if d.prog.Kafka {
		if err := env.Kafka.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		if err := env.Kafka.Load(); err != nil {
			return err
		}
		for _, w := range env.Kafka.Warnings() {
			logger.Warn(w)
		}
		if env.Kafka.Secured() {
			// A refused password or certificate ends the start here, not in
			// an endless reconnection loop; a cluster not up yet does not.
			logger.Info("kafka connection", env.Kafka.LogAttrs()...)
			if err := env.Kafka.Check(ctx, d.kafkaWait, logger); err != nil {
				return err
			}
		}
	}
	if d.prog.Trace {
		tp, stopTracing, err := telemetry.StartTracing(ctx, "switchboard-"+d.prog.Name, getenv)
		if err != nil {
			return err
		}
		defer stopTracing(context.WithoutCancel(ctx)) //nolint:errcheck // best effort at exit
		env.Tracing = telemetry.NewTracing(tp)
		env.Kafka.Tracing = env.Tracing
	}
	if d.prog.Topics {
		if env.Topics, err = topicspec.Setup(ctx, d.topicsFile, d.prefix, d.provision, env.Kafka, logger); err != nil {
			return err
		}
	}
	var adminLn net.Listener
	if d.adminAddr != "" && (d.prog.OneShot == nil || !d.prog.OneShot()) {
		// Bound before the work starts: a taken port fails the start
		// before the program joins a group or produces anything.
		if adminLn, err = new(net.ListenConfig).Listen(ctx, "tcp", d.adminAddr); err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		env.AdminAddr = adminLn.Addr().String()
	}
	return d.supervise(ctx, env, adminLn, run)
}

// supervise runs the program and the admin server as one group: the
// program first gets ctx; when it returns (or fails), the admin server
// stops; if the admin server fails, the program's context is cancelled.
// After ctx is done the program has StopTimeout to return.
func (d *Daemon) supervise(ctx context.Context, env *Env, adminLn net.Listener, run RunFunc) error {
	g, gctx := errgroup.WithContext(ctx)
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAdmin()
	if adminLn != nil {
		env.adminMux = http.NewServeMux()
		env.adminMux.Handle("/", AdminHandler(env.Registry, env.readiness, d.pprof))
		g.Go(func() error {
			err := httpserve.Run(adminCtx, adminLn, env.adminMux, time.Second, env.Logger.With("listener", "admin"))
			if err != nil {
				return fmt.Errorf("admin: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error {
		defer stopAdmin() // the admin server outlives the drain, then stops
		return run(gctx, env)
	})
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	t := time.NewTimer(d.stopTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("did not stop within %v (--stop-timeout)", d.stopTimeout)
	}
}

// AdminHandler serves /metrics from reg, /healthz, /readyz (asking status)
// and, with pprof, Go's profiles under /debug/pprof/.
func AdminHandler(reg *prometheus.Registry, status func(*http.Request) (string, error), pprof bool) http.Handler {
	mux := http.NewServeMux()
	telemetry.MountStatus(mux, reg, status)
	if pprof {
		telemetry.MountPprof(mux)
	}
	return mux
}
