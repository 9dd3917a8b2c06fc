// Command modelsim serves an OpenAI-compatible chat-completions simulator
// (internal/modelsim) for development, tests and load tests: it stands in
// for vLLM, Ollama, llama.cpp or OpenAI behind the router worker.
//
//	modelsim --addr 127.0.0.1:8090 --models sim,sim-large --latency 200ms --jitter 20ms
//
// Several instances (each its own simulator, as separate backends) listen
// when --addr lists several addresses; fault flags make them misbehave:
//
//	modelsim --addr 127.0.0.1:8091,127.0.0.1:8092 --error-rate 503=0.1,429=0.05 --retry-after 1s \
//	  --hang-fraction 0.01 --reset-fraction 0.01 --slow-first-token-fraction 0.05 --slow-first-token 5s
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/healthcheck"
	"github.com/switchboard-llm/switchboard/internal/httpserve"
	"github.com/switchboard-llm/switchboard/internal/modelsim"
	"github.com/switchboard-llm/switchboard/internal/telemetry"
)

// shutdownTimeout bounds how long in-flight requests may finish after a signal.
const shutdownTimeout = 10 * time.Second

func main() {
	if len(os.Args) > 1 && os.Args[1] == healthcheck.Command { // images have no shell: Docker probes run the binary
		os.Exit(healthcheck.Main(os.Args[2:], "http://127.0.0.1:8090/readyz", os.Stdout, os.Stderr))
	}
	d := daemon.New(daemon.Program{Name: "modelsim"})
	addrs, models, errorRates := []string{"127.0.0.1:8090"}, []string{modelsim.DefaultModel}, ""
	cfg := modelsim.Config{BaseLatency: 200 * time.Millisecond, Jitter: 20 * time.Millisecond, LongTailLatency: modelsim.DefaultLongTailLatency}
	f := d.Flags
	f.List(&addrs, "addr", "listen address; several, comma-separated, start one simulator on each (each serves /metrics, /healthz and /readyz too)")
	f.List(&models, "models", "comma-separated model names to serve")
	f.Duration(&cfg.BaseLatency, "latency", "base latency of a request (spread over the tokens of a stream)")
	f.Duration(&cfg.Jitter, "jitter", "uniform latency jitter, plus or minus")
	f.Float64(&cfg.LongTailFraction, "long-tail-fraction", "fraction of requests, 0..1, that take --long-tail-latency")
	f.Duration(&cfg.LongTailLatency, "long-tail-latency", "latency of long-tail requests")
	f.Uint64(&cfg.Seed, "seed", "seed of the latency PRNG")
	f.String(&errorRates, "error-rate", "fraction of requests answered with an error status, as status=fraction,... (e.g. 503=0.1,429=0.05)")
	f.Duration(&cfg.Faults.RetryAfter, "retry-after", "Retry-After sent with 429 and 503 answers (0: none)")
	f.Float64(&cfg.Faults.HangFraction, "hang-fraction", "fraction of requests never answered")
	f.Float64(&cfg.Faults.ResetFraction, "reset-fraction", "fraction of requests whose connection is reset (streams: halfway)")
	f.Float64(&cfg.Faults.SlowFirstTokenFraction, "slow-first-token-fraction", "fraction of requests whose first token is delayed by --slow-first-token")
	f.Duration(&cfg.Faults.SlowFirstToken, "slow-first-token", "extra delay before the first token of slow requests")
	d.Main(func(ctx context.Context, env *daemon.Env) error {
		cfg.Models = models
		if errorRates != "" {
			rates, err := parseErrorRates(errorRates)
			if err != nil {
				return err
			}
			cfg.Faults.ErrorRates = rates
		}
		return serve(ctx, env, cfg, addrs)
	})
}

// serve starts one simulator on each address and serves until ctx is done.
// All listeners are bound before any serves, so a taken port fails the start.
func serve(ctx context.Context, env *daemon.Env, cfg modelsim.Config, addrs []string) error {
	metrics := modelsim.NewMetrics(env.Registry)
	handlers := make([]http.Handler, len(addrs))
	lns := make([]net.Listener, 0, len(addrs))
	defer func() {
		for _, ln := range lns {
			ln.Close() // after Serve: already closed, harmless
		}
	}()
	for i, a := range addrs {
		c := cfg
		c.Seed += uint64(i) // instances differ in their draws
		sim, err := modelsim.New(c, env.Logger)
		if err != nil {
			return err
		}
		ln, err := new(net.ListenConfig).Listen(ctx, "tcp", a)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		lns = append(lns, ln)
		mux := http.NewServeMux()
		telemetry.Mount(mux, env.Registry, nil)
		mux.Handle("/", metrics.Wrap(sim.Handler(), ln.Addr().String()))
		handlers[i] = mux
		env.Logger.Info("modelsim listening", "addr", ln.Addr().String(), "models", cfg.Models)
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, ln := range lns {
		g.Go(func() error { return httpserve.Run(gctx, ln, handlers[i], shutdownTimeout, env.Logger) })
	}
	err := g.Wait()
	if err == nil {
		env.Logger.Info("modelsim stopped")
	}
	return err
}

// parseErrorRates reads status=fraction,... .
func parseErrorRates(s string) (map[int]float64, error) {
	rates := map[int]float64{}
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		status, err1 := strconv.Atoi(k)
		rate, err2 := strconv.ParseFloat(v, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("--error-rate %q: want status=fraction,... such as 503=0.1", part)
		}
		rates[status] += rate
	}
	return rates, nil
}
