package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
	"github.com/switchboard-llm/switchboard/internal/stack"
)

// runCmd runs `stack run`: the whole local stack in the foreground (make
// run), each process's output prefixed with its name, a crashed process
// restarted with backoff, Ctrl-C stopping everything in reverse order.
// Every setting also comes from the environment variable the README lists.
func runCmd(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("stack run", flag.ContinueOnError)
	bin := fs.String("bin", envOr("BIN", "bin"), "directory of the binaries (make build)")
	kafka := fs.String("kafka", envOr("KAFKA", stack.KafkaDevbroker), "devbroker (embedded, started here), apache (the local cluster of make kafka-up) or host:port,... of another cluster (env KAFKA)")
	security := fs.String("kafka-security", envOr("KAFKA_SECURITY", kafkalocal.SecurityPlaintext), "with --kafka apache: plaintext, or sasl_ssl for the secured cluster of make kafka-up KAFKA_SECURITY=sasl_ssl, each service its own principal (env KAFKA_SECURITY)")
	portOffset := fs.Int("kafka-port-offset", envInt("KAFKA_PORT_OFFSET", 0), "with --kafka apache: the cluster's port offset (env KAFKA_PORT_OFFSET)")
	dataDir := fs.String("data-dir", envOr("DATA_DIR", "data"), "devbroker's data and generated files (env DATA_DIR)")
	brokerPorts := fs.String("broker-ports", envOr("BROKER_PORTS", "19092,19093,19094"), "devbroker's three listeners (env BROKER_PORTS)")
	ingressPort := fs.Int("ingress-port", envInt("INGRESS_PORT", 8080), "ingress HTTP and WebSocket (env INGRESS_PORT)")
	grpcPort := fs.Int("ingress-grpc-port", envInt("INGRESS_GRPC_PORT", 8083), "ingress gRPC (env INGRESS_GRPC_PORT)")
	egressPort := fs.Int("egress-port", envInt("EGRESS_PORT", 8081), "egress event streams (env EGRESS_PORT)")
	ingressAdmin := fs.Int("ingress-admin-port", envInt("INGRESS_ADMIN_PORT", 8084), "ingress /metrics, /healthz, /readyz (env INGRESS_ADMIN_PORT)")
	egressAdmin := fs.Int("egress-admin-port", envInt("EGRESS_ADMIN_PORT", 8085), "egress /metrics, /healthz, /readyz (env EGRESS_ADMIN_PORT)")
	routerPort := fs.Int("router-port", envInt("ROUTER_PORT", 8082), "router-worker /metrics, /healthz, /readyz (env ROUTER_PORT)")
	simPort := fs.Int("modelsim-port", envInt("MODELSIM_PORT", 8090), "model simulator (env MODELSIM_PORT)")
	latency := fs.Duration("model-latency", envDuration("MODELSIM_LATENCY", 200*time.Millisecond), "modelsim base latency (env MODELSIM_LATENCY)")
	jitter := fs.Duration("model-jitter", envDuration("MODELSIM_JITTER", 20*time.Millisecond), "modelsim jitter (env MODELSIM_JITTER)")
	tailFrac := fs.Float64("long-tail-fraction", envFloat("MODELSIM_LONG_TAIL_FRACTION", 0), "share of slow model answers (env MODELSIM_LONG_TAIL_FRACTION)")
	tailLat := fs.Duration("long-tail-latency", envDuration("MODELSIM_LONG_TAIL_LATENCY", 1500*time.Millisecond), "their latency (env MODELSIM_LONG_TAIL_LATENCY)")
	backends := fs.String("backends", envOr("BACKENDS_FILE", "backends.yaml"), "router-worker's backends file (env BACKENDS_FILE)")
	tenants := fs.String("tenants", envOr("TENANTS_FILE", "tenants.yaml"), "ingress's and egress's tenants file (env TENANTS_FILE)")
	logFormat := fs.String("log-format", envOr("LOG_FORMAT", "text"), "service log format (env LOG_FORMAT)")
	logLevel := fs.String("log-level", envOr("LOG_LEVEL", "info"), "service log level (env LOG_LEVEL)")
	instances := fs.String("instances", envOr("INSTANCES", ""), "processes of each service, as service=count,... (ingress, router-worker, egress; default 1 each); instances beyond the first listen on free ports, printed at the start (env INSTANCES)")
	restart := fs.Bool("restart", true, "restart a service that exits on its own (1s backoff, doubling to 30s)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	in, err := stack.ParseInstances(*instances)
	if err != nil {
		return fmt.Errorf("--instances: %w", err)
	}
	var ports []int
	for _, p := range strings.Split(*brokerPorts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("--broker-ports: %w", err)
		}
		ports = append(ports, n)
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		return err
	}
	prefixed := &prefixOut{w: out}
	logger := slog.New(slog.NewTextHandler(prefixed.For("run"), &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	cfg := stack.Config{
		Bin: *bin, Dir: dir, DevbrokerPorts: ports, DevbrokerDir: filepath.Join(dir, "devbroker"),
		ModelsimPort: *simPort, RouterPort: *routerPort, EgressPort: *egressPort, IngressPort: *ingressPort, IngressGRPCPort: *grpcPort,
		IngressAdminPort: *ingressAdmin, EgressAdminPort: *egressAdmin,
		ModelLatency: *latency, ModelJitter: *jitter, LongTailFraction: *tailFrac, LongTailLatency: *tailLat,
		BackendsFile: *backends, TenantsFile: *tenants,
		CommonArgs: []string{"--log-format", *logFormat, "--log-level", *logLevel},
		Output:     prefixed.For, Logger: logger,
	}
	in.Apply(&cfg)
	if err := stack.UseKafka(ctx, &cfg, *kafka, ".", kafkalocal.Config{Security: *security, PortOffset: *portOffset}); err != nil {
		return err
	}
	if cfg.CursorSecret, err = cursorSecret(dir); err != nil {
		return err
	}
	// backends.yaml points at modelsim's default address; the environment
	// variable it reads follows the chosen port.
	os.Setenv("SWITCHBOARD_MODELSIM_URL", fmt.Sprintf("http://127.0.0.1:%d/v1", *simPort))
	s, err := stack.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(prefixed.For("run"), "stopping...")
		s.Close()
		if cfg.Brokers == "" {
			fmt.Fprintf(prefixed.For("run"), "stopped; data kept in %s\n", *dataDir)
		} else {
			fmt.Fprintf(prefixed.For("run"), "stopped; the Kafka cluster at %s keeps running (make kafka-down stops the local one)\n", cfg.Brokers)
		}
	}()
	kafkaName := "devbroker"
	if cfg.Brokers != "" {
		kafkaName = "external"
		if cfg.Cluster != nil {
			kafkaName = "Apache Kafka " + cfg.Cluster.Version() + ", 3 local KRaft nodes"
		}
	}
	fmt.Fprintf(out, `
[run] Switchboard is up: ingress :%d (gRPC :%d), egress :%d,
[run] metrics on the admin ports: ingress :%d, egress :%d, router-worker :%d,
[run] modelsim :%d (model "sim", %v), Kafka (%s) %s, data in %s/.
[run] Send a first message (sk-switchboard-dev is the development key of %s):

  curl -sS -X POST localhost:%d/v1/conversations/demo/messages \
    -H 'Authorization: Bearer sk-switchboard-dev' -H 'Content-Type: application/json' \
    -d '{"model":"sim","stream":true,"messages":[{"role":"user","content":"Hello, Switchboard!"}]}'

[run] and watch its answer stream in with the same key (the last 5 minutes are replayed, then it follows live):

  curl -N localhost:%d/v1/conversations/demo/events -H 'Authorization: Bearer sk-switchboard-dev'

[run] The live console (lag, throughput, backends and breakers, dead letters): http://localhost:%d/console/

[run] Ctrl-C stops everything; a service that crashes is restarted.

`, *ingressPort, *grpcPort, *egressPort, *ingressAdmin, *egressAdmin, *routerPort, *simPort, *latency, kafkaName, s.Brokers, *dataDir, *tenants, *ingressPort, *egressPort, *egressAdmin)
	printInstances(out, s)
	if *restart {
		s.Supervise(ctx)
	} else {
		<-ctx.Done()
	}
	return nil
}

// printInstances lists the instances beyond the first (stack run
// --instances), which listen on ports of their own.
func printInstances(out io.Writer, s *stack.Stack) {
	for _, eps := range [][]stack.Endpoint{s.Ingresses, s.Egresses} {
		for _, e := range eps[min(1, len(eps)):] {
			fmt.Fprintf(out, "[run] also %s: %s (gRPC %s), admin %s\n", e.Name, e.URL, orNone(e.GRPC), e.AdminURL)
		}
	}
	for i, u := range s.RouterURLs[min(1, len(s.RouterURLs)):] {
		fmt.Fprintf(out, "[run] also %s-%d: admin %s\n", stack.ProcRouter, i+2, u)
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// cursorSecret is egress's cursor secret: SWITCHBOARD_CURSOR_SECRET, else
// one kept with the data (dir/cursor-secret, made once), so that a
// client's cursor still resumes after egress restarts.
func cursorSecret(dir string) (string, error) {
	if v := os.Getenv("SWITCHBOARD_CURSOR_SECRET"); v != "" {
		return v, nil
	}
	path := filepath.Join(dir, "cursor-secret")
	if b, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return string(bytes.TrimSpace(b)), nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	secret := rand.Text()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", err
	}
	return secret, nil
}

// prefixOut writes whole lines, each prefixed with its source's name, to
// one writer.
type prefixOut struct {
	mu sync.Mutex
	w  io.Writer
}

// For returns a writer whose lines are prefixed with [name].
func (p *prefixOut) For(name string) io.Writer {
	return &prefixWriter{p: p, prefix: []byte("[" + name + "] ")}
}

type prefixWriter struct {
	p      *prefixOut
	prefix []byte
	mu     sync.Mutex
	buf    []byte
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.p.mu.Lock()
		_, err := w.p.w.Write(append(append([]byte{}, w.prefix...), w.buf[:i+1]...))
		w.p.mu.Unlock()
		w.buf = w.buf[i+1:]
		if err != nil {
			return len(b), err
		}
	}
	return len(b), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil {
		return n
	}
	return def
}

func envFloat(key string, def float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(key), 64); err == nil {
		return f
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}
