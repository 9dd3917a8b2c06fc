// Command devbroker runs Switchboard's embedded default broker (see
// internal/devbroker): a kfake cluster on 127.0.0.1 that keeps its data in
// --data-dir across restarts. SIGINT or SIGTERM stops it cleanly (state
// flushed, exit status 0); a second signal while stopping kills it.
//
//	devbroker --ports 19092,19093,19094 --data-dir ./data/devbroker
//	devbroker --ports 0,0,0 --data-dir "" --ready-file /tmp/brokers   # free ports, in memory
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/switchboard-llm/switchboard/internal/devbroker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop) // after the first signal, the next one kills us
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "devbroker:", err)
		os.Exit(1)
	}
}

// run parses args, starts the broker and blocks until ctx is done.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("devbroker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		ports      = fs.String("ports", "19092,19093,19094", "comma-separated `ports`, one broker each, on 127.0.0.1; 0 picks a free port")
		dataDir    = fs.String("data-dir", "./data/devbroker", "`directory` for the cluster's state, reloaded on start; empty keeps it in memory")
		syncWrites = fs.Bool("sync-writes", false, "fsync every produced batch before acknowledging it")
		readyFile  = fs.String("ready-file", "", "once listening, write the comma-separated broker addresses to this `file` (removed on exit)")
		logLevel   = fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	portList, err := parsePorts(*ports)
	if err != nil {
		return fmt.Errorf("--ports: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	b, err := devbroker.New(devbroker.Config{
		Ports:      portList,
		DataDir:    *dataDir,
		SyncWrites: *syncWrites,
		Logger:     logger,
	})
	if err != nil {
		return err
	}
	addrs := b.Addrs()
	if *readyFile != "" {
		if err := writeFileAtomic(*readyFile, strings.Join(addrs, ",")+"\n"); err != nil {
			b.Close()
			return fmt.Errorf("--ready-file: %w", err)
		}
		defer os.Remove(*readyFile)
	}
	dataDesc := *dataDir
	if dataDesc == "" {
		dataDesc = "(in memory)"
	}
	logger.Info("devbroker ready", "brokers", strings.Join(addrs, ","), "data_dir", dataDesc)

	if err := b.Run(ctx); err != nil {
		return err
	}
	logger.Info("devbroker stopped")
	return nil
}

// parsePorts parses a comma-separated list of ports.
func parsePorts(s string) ([]int, error) {
	var ports []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a port", f)
		}
		ports = append(ports, p)
	}
	if len(ports) == 0 {
		return nil, errors.New("no ports")
	}
	return ports, nil
}

// writeFileAtomic writes content to path through a temporary file in the
// same directory and a rename, so readers never see a partial file.
func writeFileAtomic(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
