package e2e

import (
	"net"
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
