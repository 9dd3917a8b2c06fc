package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestBackendsReloadOnSIGHUP: router-worker, started with two modelsim
// instances from one process, answers from the backend its file names;
// after the file changes and a SIGHUP it answers from the new one; a bad
// file and another SIGHUP change nothing and stop nothing.
func TestBackendsReloadOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	ready := filepath.Join(dir, "devbroker.ready")
	apptest.Start(t, "devbroker", bin["devbroker"], "--ports", "0,0,0", "--data-dir", filepath.Join(dir, "kafka"), "--ready-file", ready)
	brokers, err := apptest.WaitFile(ready, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	topics := apptest.Start(t, "topics", bin["topics"], "--brokers", brokers)
	if err := apptest.Wait(time.Minute, func() error {
		if !topics.Exited() {
			return fmt.Errorf("topics still running")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := topics.Stop(0); err != nil {
		t.Fatalf("topics: %v\n%s", err, topics.Output())
	}
	simA, simB := apptest.FreePort(t), apptest.FreePort(t)
	apptest.Start(t, "modelsim", bin["modelsim"], "--addr", fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", simA, simB), "--latency", "5ms")
	for _, p := range []int{simA, simB} {
		if err := apptest.WaitHTTP(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/healthz", p), time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "backends.yaml")
	write := func(name string, port int, weight int) {
		t.Helper()
		yaml := fmt.Sprintf("backends:\n  - {name: %s, base_url: \"http://127.0.0.1:%d/v1\", models: [sim], weight: %d}\n", name, port, weight)
		if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a", simA, 1)
	routerPort := apptest.FreePort(t)
	router := apptest.Start(t, "router-worker", bin["router-worker"], "--admin-addr", fmt.Sprintf("127.0.0.1:%d", routerPort),
		"--brokers", brokers, "--backends", file, "--backends-check-interval", "0", "--shutdown-timeout", "10s")
	if err := apptest.WaitHTTP(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/readyz", routerPort), time.Minute); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumeTopics("switchboard.results"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	// ask sends 5 requests and returns the backends that answered them.
	ask := func() map[string]int {
		t.Helper()
		for range 5 {
			rec, err := envelope.EncodeRequest("switchboard.requests.interactive", &pb.Request{
				RequestId: fmt.Sprintf("r%d", n), ConversationId: fmt.Sprintf("c%d", n%3), Lane: envelope.LaneInteractive,
				Model: "sim", Messages: []*pb.Message{{Role: "user", Content: "hi"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
			n++
		}
		got := map[string]int{}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		for total := 0; total < 5; {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				t.Fatalf("got %d of 5 answers: %v\n%s", total, got, router.Output())
			}
			fs.EachRecord(func(rec *kgo.Record) {
				res, err := envelope.DecodeResult(rec)
				if err != nil {
					t.Fatal(err)
				}
				if res.GetFinal() == nil {
					t.Errorf("%s: %v", res.GetRequestId(), res)
				}
				got[res.GetFinal().GetBackend()]++
				total++
			})
		}
		return got
	}
	hup := func() {
		t.Helper()
		if err := syscall.Kill(router.PID(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitLog := func(s string, count int) {
		t.Helper()
		if err := apptest.Wait(30*time.Second, func() error {
			if c := strings.Count(router.Output(), s); c < count {
				return fmt.Errorf("%q logged %d times, want %d", s, c, count)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	if got := ask(); got["a"] != 5 {
		t.Fatalf("answers from %v, want all from a", got)
	}
	write("b", simB, 2)
	if got := ask(); got["a"] != 5 {
		t.Fatalf("answers from %v before SIGHUP (file checks are off), want all from a", got)
	}
	hup()
	waitLog("backends file reloaded", 1)
	if got := ask(); got["b"] != 5 {
		t.Fatalf("answers from %v after SIGHUP, want all from b", got)
	}
	if err := os.WriteFile(file, []byte("backends: [oops"), 0o644); err != nil {
		t.Fatal(err)
	}
	hup()
	waitLog("backends file rejected", 1)
	if router.Exited() {
		t.Fatalf("router-worker exited on a bad backends file:\n%s", router.Output())
	}
	if got := ask(); got["b"] != 5 {
		t.Fatalf("answers from %v after a bad file, want all still from b", got)
	}
}
