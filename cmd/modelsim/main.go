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
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/healthcheck"
	"github.com/switchboard-llm/switchboard/internal/modelsim"
)

// shutdownTimeout bounds how long in-flight requests may finish after a signal.
const shutdownTimeout = 10 * time.Second

func main() {
	if len(os.Args) > 1 && os.Args[1] == healthcheck.Command { // images have no shell: Docker probes run the binary
		os.Exit(healthcheck.Main(os.Args[2:], "http://127.0.0.1:8090/healthz", os.Stdout, os.Stderr))
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(os.Args[1:], logger); err != nil {
		logger.Error("modelsim failed", slog.Any("error", err))
		os.Exit(1)
	}
}

// run parses args, serves until SIGINT or SIGTERM, then shuts down.
func run(args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("modelsim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address; several, comma-separated, start one simulator on each")
	models := fs.String("models", modelsim.DefaultModel, "comma-separated model names to serve")
	var cfg modelsim.Config
	fs.DurationVar(&cfg.BaseLatency, "latency", 200*time.Millisecond, "base latency of a request (spread over the tokens of a stream)")
	fs.DurationVar(&cfg.Jitter, "jitter", 20*time.Millisecond, "uniform latency jitter, plus or minus")
	fs.Float64Var(&cfg.LongTailFraction, "long-tail-fraction", 0, "fraction of requests, 0..1, that take --long-tail-latency")
	fs.DurationVar(&cfg.LongTailLatency, "long-tail-latency", modelsim.DefaultLongTailLatency, "latency of long-tail requests")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the latency PRNG")
	errorRates := fs.String("error-rate", "", "fraction of requests answered with an error status, as status=fraction,... (e.g. 503=0.1,429=0.05)")
	fs.DurationVar(&cfg.Faults.RetryAfter, "retry-after", 0, "Retry-After sent with 429 and 503 answers (0: none)")
	fs.Float64Var(&cfg.Faults.HangFraction, "hang-fraction", 0, "fraction of requests never answered")
	fs.Float64Var(&cfg.Faults.ResetFraction, "reset-fraction", 0, "fraction of requests whose connection is reset (streams: halfway)")
	fs.Float64Var(&cfg.Faults.SlowFirstTokenFraction, "slow-first-token-fraction", 0, "fraction of requests whose first token is delayed by --slow-first-token")
	fs.DurationVar(&cfg.Faults.SlowFirstToken, "slow-first-token", 0, "extra delay before the first token of slow requests")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("parse flags: %w", err)
	}
	for m := range strings.SplitSeq(*models, ",") {
		cfg.Models = append(cfg.Models, strings.TrimSpace(m))
	}
	if *errorRates != "" {
		rates, err := parseErrorRates(*errorRates)
		if err != nil {
			return err
		}
		cfg.Faults.ErrorRates = rates
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var srvs []*http.Server
	var lns []net.Listener
	for i, a := range strings.Split(*addr, ",") {
		c := cfg
		c.Seed += uint64(i) // instances differ in their draws
		sim, err := modelsim.New(c, logger)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", strings.TrimSpace(a))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listen: %w", err)
		}
		lns = append(lns, ln)
		srvs = append(srvs, &http.Server{
			Handler:           sim.Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		})
		logger.Info("modelsim listening", slog.String("addr", ln.Addr().String()), slog.Any("models", cfg.Models))
	}

	served := make(chan error, len(srvs)) // each serving goroutine exits when its server is shut down
	for i, srv := range srvs {
		go func() { served <- srv.Serve(lns[i]) }()
	}
	var err error
	pending := len(srvs) // serve results not yet received
	select {
	case err = <-served:
		err = fmt.Errorf("serve: %w", err)
		pending--
	case <-ctx.Done():
		logger.Info("modelsim shutting down")
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Go(func() {
			e := srv.Shutdown(shutdownCtx)
			if e != nil {
				e = errors.Join(fmt.Errorf("shutdown: %w", e), srv.Close())
			}
			mu.Lock()
			err = errors.Join(err, e)
			mu.Unlock()
		})
	}
	wg.Wait()
	for range pending {
		if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, fmt.Errorf("serve: %w", serveErr))
		}
	}
	if err == nil {
		logger.Info("modelsim stopped")
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
