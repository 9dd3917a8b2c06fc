package presence

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// running is a Member started on a cluster, with its latest shares.
type running struct {
	mu     sync.Mutex
	shares Shares
	stop   func()
	crash  func() // stop without a tombstone
}

func (r *running) latest() Shares {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.shares
}

// start runs a member that counts perInterval requests of tenant "t"
// every interval.
func start(t *testing.T, opts []kgo.Opt, topic, id string, perInterval float64) *running {
	t.Helper()
	r := &running{}
	m, err := New(Config{Topic: topic, Instance: id, Interval: 50 * time.Millisecond,
		Demand: func() map[string]Demand { return map[string]Demand{"t": {Requests: perInterval}} },
		Apply: func(s Shares) {
			r.mu.Lock()
			r.shares = s
			r.mu.Unlock()
		},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := m.Run(ctx, opts); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	r.crash = func() {
		m.crashed = true // read by Run after cancel
		r.stop()
	}
	t.Cleanup(r.stop)
	return r
}

// waitFor waits (10 s at most) until r's shares satisfy ok.
func waitFor(t *testing.T, r *running, what string, ok func(Shares) bool) {
	t.Helper()
	for i := 0; !ok(r.latest()); i++ {
		if i == 500 {
			t.Fatalf("%s: not after 10 s; shares %+v", what, r.latest())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMembersShareThroughKafka: two members on a cluster split a tenant by
// their demand, and the survivor takes the whole limit once the other
// leaves (tombstone) or crashes (its records stop).
func TestMembersShareThroughKafka(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "presence"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close) // after the members stopped
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	share := func(want float64) func(Shares) bool {
		return func(s Shares) bool {
			return !s.Degraded && s.Instances == 2 && math.Abs(s.Of("t").Requests-want) < 0.01
		}
	}
	a := start(t, opts, "presence", "a", 9)
	b := start(t, opts, "presence", "b", 1)
	waitFor(t, a, "a holds 90%", share(0.9))
	waitFor(t, b, "b holds 10%", share(0.1))

	b.stop() // a tombstone
	whole := func(s Shares) bool { return !s.Degraded && s.Instances == 1 && s.Of("t").Requests == 1 }
	waitFor(t, a, "a alone after b left", whole)

	// A member that stops publishing without a tombstone (a crash): its
	// records go stale after three intervals.
	d := start(t, opts, "presence", "d", 9)
	waitFor(t, a, "a sees d", share(0.5))
	d.crash()
	waitFor(t, a, "a alone after d crashed", whole)
}

// TestMemberDegraded: without its topic, a member holds limit/N of the
// last N it knew (1 here: it never saw the topic) and says so.
func TestMemberDegraded(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	a := start(t, []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...), kgo.UnknownTopicRetries(0)}, "missing", "a", 5)
	waitFor(t, a, "degraded", func(s Shares) bool { return s.Degraded && s.Instances == 1 && s.Of("t").Requests == 1 })
}
