package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/stack"
)

// TestStackRestartsACrashedService: the launcher of make run restarts a
// service that dies on its own (here egress, killed behind the
// launcher's back) and leaves the others running.
func TestStackRestartsACrashedService(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := stack.Start(ctx, stack.Config{Bin: filepath.Dir(bin["ingress"]), Dir: t.TempDir(), ModelLatency: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	superviseCtx, stopSupervise := context.WithCancel(ctx)
	supervised := make(chan struct{})
	go func() { defer close(supervised); s.Supervise(superviseCtx) }()
	defer func() { stopSupervise(); <-supervised }()

	// egress: it holds no group membership, so its restart is not held up
	// by an old session (a dynamic router-worker's would wait out its 20 s).
	before := s.PIDs()
	if err := syscall.Kill(before[stack.ProcEgress], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := apptest.Wait(30*time.Second, func() error {
		if pid := s.PIDs()[stack.ProcEgress]; pid == 0 || pid == before[stack.ProcEgress] {
			return fmt.Errorf("egress pid %d (was %d): not restarted", pid, before[stack.ProcEgress])
		}
		return apptest.WaitHTTP(ctx, s.EgressAdminURL+"/readyz", time.Second)
	}); err != nil {
		t.Fatalf("egress not back: %v", err)
	}
	after := s.PIDs()
	for _, name := range []string{stack.ProcDevbroker, stack.ProcIngress, stack.ProcRouter, stack.ProcModelsim} {
		if after[name] != before[name] {
			t.Errorf("%s: pid %d before, %d after; only the crashed service should restart", name, before[name], after[name])
		}
	}
}
