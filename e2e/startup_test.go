package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// A router-worker, or an egress delivering webhooks, whose listen address
// is taken exits at once with status 1 and the reason, and its consumer
// group never sees it (issue 15: the worker joined, failed to listen, and
// could hang leaving while its partitions stalled). Before the fix this
// was a race between the join and the listen error, which the process
// usually won on an idle machine: TestTakenAddrExitsWithoutJoining in
// internal/router and internal/egress widen the window and reproduce it
// every time; this test checks the binaries end to end.
func TestTakenPortExitsWithoutJoining(t *testing.T) {
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
			return os.ErrDeadlineExceeded
		}
		return nil
	}); err != nil || topics.Stop(time.Second) != nil {
		t.Fatalf("topics: %v\n%s", err, topics.Output())
	}
	backends := filepath.Join(dir, "backends.yaml")
	if err := os.WriteFile(backends, []byte("backends:\n  - name: sim\n    base_url: http://127.0.0.1:1/v1\n    models: [sim]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	for _, tc := range []struct {
		name, group string
		args        []string
	}{
		{"router-worker", "taken-router", []string{"--addr", taken.Addr().String(), "--brokers", brokers,
			"--backends", backends, "--group", "taken-router"}},
		{"egress", "taken-webhooks", []string{"--addr", taken.Addr().String(), "--brokers", brokers,
			"--allow-anonymous", "--webhooks", "--webhook-allow", "127.0.0.1", "--webhook-group", "taken-webhooks"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SWITCHBOARD_WEBHOOK_SECRET", "secret-0123456789abcdef")
			p := apptest.Start(t, tc.name, bin[tc.name], tc.args...)
			if err := apptest.Wait(15*time.Second, func() error {
				if !p.Exited() {
					return os.ErrDeadlineExceeded
				}
				return nil
			}); err != nil {
				t.Fatalf("%s still running 15s after failing to listen:\n%s", tc.name, p.Output())
			}
			if err := p.Stop(time.Second); err == nil || !strings.Contains(p.Output(), "address already in use") {
				t.Errorf("exit %v, output:\n%s\nwant a failure naming the taken address", err, p.Output())
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			groups, err := kadm.NewClient(cl).DescribeGroups(t.Context(), tc.group)
			if err != nil {
				t.Fatal(err)
			}
			if g := groups[tc.group]; len(g.Members) > 0 || (g.State != "" && g.State != "Dead") {
				t.Errorf("group %s: state %q, members %d; want it never joined", tc.group, g.State, len(g.Members))
			}
		})
	}
}

// A static router-worker killed with SIGKILL and restarted with the same
// --instance-id holds its partitions again within seconds, not after its
// 30s session timeout, and /readyz shows it (issue 15: after a kill -9 the
// worker sat 45s while /readyz said ready).
func TestStaticWorkerRestartGetsItsPartitions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	const session = 30 * time.Second
	s := apptest.StartStack(t, bin, apptest.StackOptions{Routers: 1,
		RouterArgs: []string{"--instance-id", "worker-a", "--session-timeout", session.String()}})
	readyz := func() string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.RouterURLs[len(s.RouterURLs)-1]+"/readyz", nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return fmt.Sprintf("%d %s", res.StatusCode, b)
	}
	// Both lanes' 12 partitions (topics.yaml).
	const want = "member worker-a (static), generation"
	if got := readyz(); !strings.HasPrefix(got, "200 ready\n") || !strings.Contains(got, want) || !strings.Contains(got, "24 partitions") {
		t.Fatalf("/readyz = %q, want ready, %q and 24 partitions", got, want)
	}
	s.Routers[0].Kill()
	start := time.Now()
	s.StartRouter() // the same flags: the same instance ID; returns once /readyz is 200
	took := time.Since(start)
	got := readyz()
	if !strings.Contains(got, want) || !strings.Contains(got, "24 partitions") {
		t.Errorf("after the restart /readyz = %q, want %q and 24 partitions", got, want)
	}
	if took > session/3 {
		t.Errorf("the restarted worker was ready after %v, want well within its %v session timeout", took, session)
	}
	t.Logf("restarted static worker ready with its partitions after %v", took.Round(10*time.Millisecond))
}
