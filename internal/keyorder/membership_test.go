package keyorder

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// member is an engine run by a membership test.
type member struct {
	e    *Engine
	stop func() // cancels Run and waits for it
}

// runMember starts an engine in group "g" over topic "t" with the given
// instance ID and a session timeout long enough that only static
// membership can explain a fast handover.
func runMember(t *testing.T, c *kfake.Cluster, instanceID string, session time.Duration) *member {
	t.Helper()
	e, err := New(Config{
		Group: "g", Topics: []string{"t"}, InstanceID: instanceID, SessionTimeout: session,
		Handler: func(context.Context, *kgo.Record) error { return nil },
		ClientOpts: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...),
			kgo.HeartbeatInterval(200 * time.Millisecond), kgo.FetchMaxWait(100 * time.Millisecond)},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	stopped := false
	m := &member{e: e, stop: func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("member %s did not stop within 30s", instanceID)
		}
	}}
	t.Cleanup(m.stop)
	return m
}

// waitFor polls cond every 20ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// A new engine must not join its group before Run: a process that fails
// between New and Run (a taken listen address) must leave no member behind.
func TestNoJoinBeforeRun(t *testing.T) {
	c := newCluster(t, 2, "t")
	var joins atomic.Int64
	c.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		joins.Add(1)
		return nil, nil, false
	})
	e, err := New(Config{
		Group: "g", Topics: []string{"t"},
		Handler:    func(context.Context, *kgo.Record) error { return nil },
		ClientOpts: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)},
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a client that joins at creation does it by now
	if st := e.Status(); st.Joined || joins.Load() != 0 {
		t.Errorf("before Run: joined %v after %d JoinGroup requests, want no join", st.Joined, joins.Load())
	}
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close of an engine that never ran did not return within 10s")
	}

	m := runMember(t, c, "", 10*time.Second)
	if !waitFor(10*time.Second, func() bool { st := m.e.Status(); return st.Joined && st.Held() == 2 }) {
		t.Fatalf("after Run: status %v, want joined with both partitions", m.e.Status())
	}
	if joins.Load() == 0 {
		t.Error("Run joined without a JoinGroup request?")
	}
}

// A static member that dies without leaving and restarts with the same
// instance ID gets its partitions back at once, long before its session
// would expire; the other member keeps its own throughout.
func TestStaticMemberRestartKeepsPartitions(t *testing.T) {
	const session = 30 * time.Second
	c := newCluster(t, 4, "t")
	a := runMember(t, c, "a", session)
	b := runMember(t, c, "b", session)
	both := func(x, y *member) bool {
		sx, sy := x.e.Status(), y.e.Status()
		return sx.Joined && sy.Joined && sx.Held() == 2 && sy.Held() == 2
	}
	if !waitFor(20*time.Second, func() bool { return both(a, b) }) {
		t.Fatalf("members did not share the partitions: a %v; b %v", a.e.Status(), b.e.Status())
	}
	had, bHad := a.e.Status().Partitions["t"], b.e.Status().Partitions["t"]

	// A static member stopping sends no LeaveGroup: to the group this is a
	// crash. Its partitions are not reassigned while its session lasts.
	a.stop()
	time.Sleep(time.Second)
	if got := b.e.Status().Partitions["t"]; !slices.Equal(got, bHad) {
		t.Errorf("b's partitions changed to %v after a static member vanished, want %v until its session expires", got, bHad)
	}

	start := time.Now()
	a2 := runMember(t, c, "a", session)
	if !waitFor(session/3, func() bool { return both(a2, b) }) {
		t.Fatalf("the restarted static member did not get its partitions within %v (session timeout %v): a %v; b %v",
			session/3, session, a2.e.Status(), b.e.Status())
	}
	t.Logf("restarted member held its partitions after %v", time.Since(start).Round(10*time.Millisecond))
	if got := a2.e.Status().Partitions["t"]; !slices.Equal(got, had) {
		t.Errorf("restarted member holds %v, want its old %v", got, had)
	}
	if got := b.e.Status().Partitions["t"]; !slices.Equal(got, bHad) {
		t.Errorf("b holds %v, want its own %v throughout", got, bHad)
	}
}

func TestStatusString(t *testing.T) {
	for _, tc := range []struct {
		s    Status
		want string
	}{
		{Status{Group: "g"}, "group g, not joined"},
		{Status{Group: "g", InstanceID: "w-1", Joined: true, Generation: 3, Partitions: map[string][]int32{}},
			"group g member w-1 (static), generation 3, 0 partitions"},
		{Status{Group: "g", Joined: true, Generation: 7, Partitions: map[string][]int32{"b": {0, 4}, "a": {2}}},
			"group g, generation 7, 3 partitions: a[2] b[0 4]"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}
