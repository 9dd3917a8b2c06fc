package egress

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/switchboard-llm/switchboard/internal/httpserve"
)

// streamCaps counts open streams per tenant and per conversation; a stream
// beyond either cap is refused with 429 too_many_streams. A zero cap is
// no cap. Streams of egress without tenants count under tenant "".
type streamCaps struct {
	perTenant, perConv int
	mu                 sync.Mutex
	tenants            map[string]int
	convs              map[convKey]int
}

// convKey is a conversation of a tenant: two tenants' conversations of
// one ID are different streams' business.
type convKey struct{ tenant, conv string }

func newStreamCaps(perTenant, perConv int) *streamCaps {
	return &streamCaps{perTenant: max(0, perTenant), perConv: max(0, perConv),
		tenants: map[string]int{}, convs: map[convKey]int{}}
}

// acquire takes a slot for a stream of tenant's conversation conv; false
// when a cap is reached.
func (c *streamCaps) acquire(tenant, conv string) bool {
	k := convKey{tenant, conv}
	c.mu.Lock()
	defer c.mu.Unlock()
	if (c.perTenant > 0 && c.tenants[tenant] >= c.perTenant) || (c.perConv > 0 && c.convs[k] >= c.perConv) {
		return false
	}
	c.tenants[tenant]++
	c.convs[k]++
	return true
}

func (c *streamCaps) release(tenant, conv string) {
	k := convKey{tenant, conv}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tenants[tenant]--; c.tenants[tenant] <= 0 {
		delete(c.tenants, tenant)
	}
	if c.convs[k]--; c.convs[k] <= 0 {
		delete(c.convs, k)
	}
}

// errSlow ends a stream whose client does not read: its socket has held
// more than MaxUnsentBytes for WriteTimeout. The stream then ends with
// reason overflow, like one whose mailbox filled.
var errSlow = errors.New("the client is not reading")

// backlog watches the kernel send queue of one stream's connection (see
// httpserve.Unsent). A nil backlog, or one on a system that cannot tell,
// never waits: the write deadline alone bounds a stuck client.
type backlog struct {
	conn    net.Conn
	max     int
	timeout time.Duration
	// bound is at least the connection's unsent bytes: what the kernel
	// last said plus what was written since. While it is at most max, the
	// kernel need not be asked.
	bound  int
	unsent func(net.Conn) (int, bool) // httpserve.Unsent; tests replace it
}

// newBacklog returns the backlog of the connection ctx's request arrived
// on, or nil when it is not known (a server other than Run's).
func (e *Egress) newBacklog(ctx context.Context) *backlog {
	c := httpserve.Conn(ctx)
	if c == nil || e.cfg.MaxUnsentBytes <= 0 {
		return nil
	}
	// The response's header and first lines were written before: counted
	// generously, so the bound starts above them.
	return &backlog{conn: c, max: e.cfg.MaxUnsentBytes, timeout: e.cfg.WriteTimeout, bound: 4096, unsent: httpserve.Unsent}
}

// framing bounds what one write adds beyond its bytes on the wire: an
// HTTP chunk's size line, a WebSocket frame header, a TLS record's
// overhead.
const framing = 64

// wait returns once the connection's unsent bytes are at most max, and
// counts the n bytes the caller then writes; errSlow when they are not
// within timeout, ctx's error when it ends first. It asks the kernel (an
// ioctl) only when the bytes written since it last did could have filled
// the queue past max: a reading client costs one ioctl per max bytes, not
// one per event. It polls, from 2ms doubling to 1s.
func (b *backlog) wait(ctx context.Context, n int) error {
	if b == nil {
		return nil
	}
	if err := b.room(ctx); err != nil {
		return err
	}
	b.bound += n + framing
	return nil
}

// room returns once the connection's unsent bytes are at most max.
func (b *backlog) room(ctx context.Context) error {
	if b.bound <= b.max {
		return nil
	}
	n, ok := b.unsent(b.conn)
	if !ok || n <= b.max {
		b.bound = n // 0 when the system cannot tell: it is not asked again for max bytes
		return nil
	}
	deadline := time.Now().Add(b.timeout)
	for pause := 2 * time.Millisecond; ; pause = min(2*pause, time.Second) {
		if !time.Now().Before(deadline) {
			return errSlow
		}
		t := time.NewTimer(min(pause, time.Until(deadline)))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if n, ok = b.unsent(b.conn); !ok || n <= b.max {
			b.bound = n
			return nil
		}
	}
}
