// Command modelsim serves an OpenAI-compatible chat-completions simulator
// (internal/modelsim) for development, tests and load tests: it stands in
// for vLLM, Ollama, llama.cpp or OpenAI behind the router worker.
//
//	modelsim --addr 127.0.0.1:8090 --models sim,sim-large --latency 200ms --jitter 20ms
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
	"strings"
	"syscall"
	"time"

	"github.com/switchboard-llm/switchboard/internal/modelsim"
)

// shutdownTimeout bounds how long in-flight requests may finish after a signal.
const shutdownTimeout = 10 * time.Second

func main() {
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(os.Args[1:], logger); err != nil {
		logger.Error("modelsim failed", slog.Any("error", err))
		os.Exit(1)
	}
}

// run parses args, serves until SIGINT or SIGTERM, then shuts down.
func run(args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("modelsim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	models := fs.String("models", modelsim.DefaultModel, "comma-separated model names to serve")
	var cfg modelsim.Config
	fs.DurationVar(&cfg.BaseLatency, "latency", 200*time.Millisecond, "base latency of a request (spread over the tokens of a stream)")
	fs.DurationVar(&cfg.Jitter, "jitter", 20*time.Millisecond, "uniform latency jitter, plus or minus")
	fs.Float64Var(&cfg.LongTailFraction, "long-tail-fraction", 0, "fraction of requests, 0..1, that take --long-tail-latency")
	fs.DurationVar(&cfg.LongTailLatency, "long-tail-latency", modelsim.DefaultLongTailLatency, "latency of long-tail requests")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "seed of the latency PRNG")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("parse flags: %w", err)
	}
	for m := range strings.SplitSeq(*models, ",") {
		cfg.Models = append(cfg.Models, strings.TrimSpace(m))
	}

	sim, err := modelsim.New(cfg, logger)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           sim.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("modelsim listening", slog.String("addr", ln.Addr().String()), slog.Any("models", cfg.Models))

	served := make(chan error, 1) // the serving goroutine exits when srv is shut down
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("modelsim shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	if err != nil {
		err = errors.Join(fmt.Errorf("shutdown: %w", err), srv.Close())
	}
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve: %w", serveErr))
	}
	if err == nil {
		logger.Info("modelsim stopped")
	}
	return err
}
