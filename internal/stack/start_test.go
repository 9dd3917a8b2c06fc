package stack

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// fakeEnv makes this test binary act as a service (see TestMain): it exits
// with status 1 while the file in fakeOnceEnv does not exist (creating
// it), else serves 200 on /readyz of its --admin-addr until killed.
const (
	fakeEnv     = "STACK_TEST_FAKE_SERVICE"
	fakeOnceEnv = "STACK_TEST_FAKE_ONCE"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeEnv) == "1" {
		fakeService()
		return
	}
	os.Exit(m.Run())
}

func fakeService() {
	if once := os.Getenv(fakeOnceEnv); once != "" {
		if _, err := os.Stat(once); err != nil {
			_ = os.WriteFile(once, nil, 0o644)
			os.Exit(1) // as when the port was taken
		}
	}
	addr := ""
	for i, a := range os.Args {
		if a == "--admin-addr" && i+1 < len(os.Args) {
			addr = os.Args[i+1]
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(http.ResponseWriter, *http.Request) {})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	_ = srv.ListenAndServe()
	os.Exit(2)
}

// fakeStack is a Stack whose binaries are this test binary acting as a
// service.
func fakeStack(t *testing.T) *Stack {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, b := range []string{ProcIngress, ProcEgress, ProcRouter} {
		if err := os.Symlink(self, filepath.Join(dir, b)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(fakeEnv, "1")
	cfg := Config{Bin: dir, Dir: dir, Logger: slog.New(slog.DiscardHandler)}
	cfg.defaults()
	cfg.ReadyTimeout = 10 * time.Minute // a failure must come from the exit, not from this
	s := &Stack{cfg: cfg, procs: map[string]*proc{}}
	t.Cleanup(s.Close)
	return s
}

// A process that exits before it is ready is reported at once, not after
// the readiness timeout.
func TestStartReportsEarlyExit(t *testing.T) {
	s := fakeStack(t)
	t.Setenv(fakeOnceEnv, filepath.Join(t.TempDir(), "once"))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s.add(ProcEgress, nil, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	err := s.Start(ctx, ProcEgress)
	if !errors.Is(err, errExitedEarly) || ctx.Err() != nil {
		t.Fatalf("Start of a process that exits: %v (context: %v); want errExitedEarly before the context ends", err, ctx.Err())
	}
}

// An instance whose first start exits (a free port taken meanwhile) is
// started again on other ports, keeping its name and place.
func TestStartRetriesOnOtherPorts(t *testing.T) {
	for _, svc := range []string{ProcEgress, ProcIngress, ProcRouter} {
		t.Run(svc, func(t *testing.T) {
			s := fakeStack(t)
			once := filepath.Join(t.TempDir(), "once")
			t.Setenv(fakeOnceEnv, once)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			var err error
			var admin []string
			switch svc {
			case ProcEgress:
				err = s.startEgress(ctx, 0)
				for _, e := range s.Egresses {
					admin = append(admin, e.AdminURL)
				}
			case ProcIngress:
				err = s.startIngress(ctx, 0)
				for _, e := range s.Ingresses {
					admin = append(admin, e.AdminURL)
				}
			case ProcRouter:
				_, err = s.AddRouter(ctx)
				admin = s.RouterURLs
			}
			if err != nil {
				t.Fatalf("start after one early exit: %v", err)
			}
			if _, err := os.Stat(once); err != nil {
				t.Fatal("the first start did not exit: the retry was not exercised")
			}
			if len(admin) != 1 || len(s.Names()) != 1 {
				t.Fatalf("after a retry: admin URLs %v, processes %v; want one each", admin, s.Names())
			}
			if err := WaitHTTP(ctx, admin[0]+"/readyz", time.Minute); err != nil {
				t.Errorf("the recorded address is not the running instance's: %v", err)
			}
			if !slices.Equal(s.Exited(), nil) {
				t.Errorf("exited: %v", s.Exited())
			}
		})
	}
}
