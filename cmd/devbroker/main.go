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
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/devbroker"
)

func main() {
	d, s := newDaemon()
	d.Main(s.run)
}

// settings are devbroker's own settings, beside the daemon's shared ones.
type settings struct {
	ports, dataDir, readyFile string
	syncWrites                bool
}

func newDaemon() (*daemon.Daemon, *settings) {
	d := daemon.New(daemon.Program{Name: "devbroker"})
	s := &settings{ports: "19092,19093,19094", dataDir: "./data/devbroker"}
	f := d.Flags
	f.String(&s.ports, "ports", "comma-separated ports, one broker each, on 127.0.0.1; 0 picks a free port")
	f.String(&s.dataDir, "data-dir", "directory for the cluster's state, reloaded on start; empty keeps it in memory")
	f.Bool(&s.syncWrites, "sync-writes", "fsync every produced batch before acknowledging it")
	f.String(&s.readyFile, "ready-file", "once listening, write the comma-separated broker addresses to this file (removed on exit)")
	return d, s
}

// run parses args, starts the broker and blocks until ctx is done.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	d, s := newDaemon()
	return d.Run(ctx, args, os.Getenv, io.Discard, stderr, s.run)
}

// run starts the broker and blocks until ctx is done.
func (s *settings) run(ctx context.Context, env *daemon.Env) error {
	portList, err := parsePorts(s.ports)
	if err != nil {
		return fmt.Errorf("--ports: %w", err)
	}
	logger := env.Logger
	b, err := devbroker.New(devbroker.Config{
		Ports:      portList,
		DataDir:    s.dataDir,
		SyncWrites: s.syncWrites,
		Logger:     logger,
	})
	if err != nil {
		return err
	}
	addrs := b.Addrs()
	if s.readyFile != "" {
		if err := writeFileAtomic(s.readyFile, strings.Join(addrs, ",")+"\n"); err != nil {
			b.Close()
			return fmt.Errorf("--ready-file: %w", err)
		}
		defer os.Remove(s.readyFile)
	}
	dataDesc := s.dataDir
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
