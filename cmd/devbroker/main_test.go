package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// buildBinary builds this command into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not found: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "devbroker")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// waitFile waits until path exists and is not empty, and returns its content.
func waitFile(ctx context.Context, t *testing.T, path string) string {
	t.Helper()
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 {
			return string(b)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestProcessLifecycle(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	data := filepath.Join(dir, "data")

	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--ports", "0,0,0", "--ready-file", ready, "--data-dir", data)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			if err := <-exited; err != nil {
				t.Logf("devbroker killed at cleanup: %v", err)
			}
		}
	}()

	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	addrs := strings.Split(strings.TrimSpace(waitFile(ctx, t, ready)), ",")
	if len(addrs) != 3 {
		t.Fatalf("ready file: got %v, want three addresses", addrs)
	}

	func() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("t"))
		if err != nil {
			t.Fatalf("kgo: %v", err)
		}
		defer cl.Close()
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 3, nil, "t"); err != nil {
			t.Fatalf("CreateTopic: %v", err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("v")}).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case err := <-exited:
		waited = true
		if err != nil {
			t.Errorf("exit: got %v, want status 0\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		if err := <-exited; err != nil {
			t.Logf("devbroker killed: %v", err)
		}
		waited = true
		t.Fatalf("devbroker did not exit within 10s of SIGTERM\nstderr:\n%s", stderr.String())
	}

	logs := stderr.String()
	for _, want := range []string{`"msg":"devbroker ready"`, `"brokers":"` + strings.Join(addrs, ",") + `"`, `"data_dir":"` + data + `"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("stderr: missing %s\n%s", want, logs)
		}
	}
	if _, err := os.Stat(ready); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ready file after exit: got %v, want it removed", err)
	}
	if _, err := os.Stat(filepath.Join(data, "meta.json")); err != nil {
		t.Errorf("data dir after exit: %v", err)
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{in: "19092,19093,19094", want: []int{19092, 19093, 19094}},
		{in: " 0, 0 ,0", want: []int{0, 0, 0}},
		{in: "9092,", want: []int{9092}},
		{in: "", wantErr: true},
		{in: "x", wantErr: true},
	}
	for _, tt := range tests {
		got, err := parsePorts(tt.in)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parsePorts(%q): got %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := [][]string{
		{"--ports", "a"},
		{"--log-level", "loud"},
		{"--ports", "-1"},
		{"extra"},
	}
	for _, args := range tests {
		var stderr bytes.Buffer
		if err := run(t.Context(), args, &stderr); err == nil {
			t.Errorf("run(%q): got nil error", args)
		}
	}
}
