package router

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// countJoins counts the JoinGroup requests c receives.
func countJoins(c *kfake.Cluster) *atomic.Int64 {
	var n atomic.Int64
	c.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n.Add(1)
		return nil, nil, false
	})
	return &n
}

// A worker never joins its group before Run: the daemon binds the admin
// listener first (a taken address fails the start, daemon's
// TestAdminListenerTaken), and New leaves the group alone, so a failed start
// holds no partitions (issue 15).
func TestNewDoesNotJoin(t *testing.T) {
	h := newHarness(t)
	joins := countJoins(h.cluster)
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{
		Kafka:   kafkaconf.Config{Brokers: h.cluster.ListenAddrs()},
		Topics:  spec,
		Routing: Routing{Backends: []Backend{{Name: "sim", BaseURL: "http://127.0.0.1:1/v1", Models: []string{"sim"}}}},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Give a client that joins at creation the time to do it.
	time.Sleep(500 * time.Millisecond)
	r.Close()
	if n := joins.Load(); n != 0 {
		t.Errorf("the worker sent %d JoinGroup requests before Run, want none", n)
	}
}

// /readyz is 503 until the worker has joined its group, then 200 with the
// partitions it holds in the body.
func TestReadyOnceJoined(t *testing.T) {
	h := newHarness(t)
	h.run(h.modelsim(time.Millisecond), func(c *Config) { c.SessionTimeout = 10 * time.Second })
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		body, err = h.router.Ready(httptest.NewRequest("GET", "/readyz", nil))
		if err == nil {
			break
		}
		if !strings.Contains(body, "not joined") {
			t.Fatalf("not ready (%v) with status %q, want \"not joined\" in it", err, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 20s: %v (%s)", err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// One worker holds all 4 partitions of both lanes.
	for _, want := range []string{"group switchboard-router", "8 partitions", interactive + "[0 1 2 3]", batch + "[0 1 2 3]"} {
		if !strings.Contains(body, want) {
			t.Errorf("ready status %q lacks %q", body, want)
		}
	}
}
