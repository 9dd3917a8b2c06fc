package egress

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestBacklogAsksOnlyWhenItCouldBeFull: the kernel is asked for a
// connection's unsent bytes only once the bytes written since it last
// answered could exceed the bound; over the bound, writes wait for the
// queue to fall, and a queue that stays full ends the stream.
func TestBacklogAsksOnlyWhenItCouldBeFull(t *testing.T) {
	asked, queued := 0, 0
	b := &backlog{max: 1000, timeout: 200 * time.Millisecond, unsent: func(net.Conn) (int, bool) {
		asked++
		return queued, true
	}}
	ctx := context.Background()
	// 9 writes of 36 bytes (100 with framing) fit under 1000: no question.
	for range 9 {
		if err := b.wait(ctx, 36); err != nil {
			t.Fatal(err)
		}
	}
	if asked != 0 {
		t.Fatalf("asked the kernel %d times for 900 bytes under a bound of 1000", asked)
	}
	// The bound reaches max (900, 1000), then passes it (1100): the next
	// write asks, the kernel says the client read everything, and the
	// count starts again from there.
	for range 3 {
		if err := b.wait(ctx, 36); err != nil {
			t.Fatal(err)
		}
	}
	if asked != 1 || b.bound != 100 {
		t.Fatalf("asked %d times, bound %d; want 1 and 100 (a write after an empty queue)", asked, b.bound)
	}
	// A client that stops reading: the queue stays above max.
	queued = 5000
	b.bound = 2000
	start := time.Now()
	if err := b.wait(ctx, 36); !errors.Is(err, errSlow) {
		t.Fatalf("a full queue for the whole timeout: %v, want errSlow", err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Fatalf("gave up after %v, before the timeout", waited)
	}
	// The queue falls while the writer waits: the write goes on.
	asked = 0
	b.unsent = func(net.Conn) (int, bool) {
		asked++
		if asked >= 3 {
			return 10, true
		}
		return 5000, true
	}
	if err := b.wait(ctx, 36); err != nil || asked != 3 || b.bound != 10+36+framing {
		t.Fatalf("err %v after %d questions, bound %d", err, asked, b.bound)
	}
	var nilBacklog *backlog
	if err := nilBacklog.wait(ctx, 1<<20); err != nil {
		t.Fatalf("a nil backlog waited: %v", err)
	}
}
