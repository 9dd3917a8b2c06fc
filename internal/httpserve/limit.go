package httpserve

import (
	"context"
	"net"
	"sync"
	"syscall"
)

// Limit wraps ln: a connection from an IP address that already has
// perAddr open connections is closed as soon as it is accepted (perAddr
// 0: no cap), and every accepted TCP connection gets a kernel send buffer
// of sendBuffer bytes (0: the system's default). Either way the
// connections it returns still expose their file descriptor
// (syscall.Conn), so Unsent works on them.
func Limit(ln net.Listener, perAddr, sendBuffer int) net.Listener {
	if perAddr <= 0 && sendBuffer <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, perAddr: perAddr, sendBuffer: sendBuffer, open: map[string]int{}}
}

type limitListener struct {
	net.Listener
	perAddr    int
	sendBuffer int
	mu         sync.Mutex
	open       map[string]int // client IP -> open connections
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok && l.sendBuffer > 0 {
			_ = tc.SetWriteBuffer(l.sendBuffer)
		}
		if l.perAddr <= 0 {
			return c, nil
		}
		ip := addrIP(c.RemoteAddr())
		l.mu.Lock()
		if l.open[ip] >= l.perAddr {
			l.mu.Unlock()
			c.Close() // refused: the client sees the connection closed
			continue
		}
		l.open[ip]++
		l.mu.Unlock()
		return &limitConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *limitListener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
	}
}

func addrIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// limitConn gives its slot back when it is closed, once, by whoever closes
// it (the server, or a handler that hijacked it).
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// SyscallConn exposes the underlying connection's descriptor.
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, syscall.EINVAL
	}
	return sc.SyscallConn()
}

type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Conn returns the connection a request of a server run by Serve arrived
// on, or nil (another server, such as httptest's).
func Conn(ctx context.Context) net.Conn {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	return c
}

// Unsent returns how many bytes written to c the peer has not yet
// acknowledged: what sits in the kernel's send queue because the client
// reads slowly or not at all. ok is false where the system cannot tell
// (not Linux, not a TCP connection).
func Unsent(c net.Conn) (n int, ok bool) {
	sc, isSC := c.(syscall.Conn)
	if !isSC {
		return 0, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	return unsent(raw)
}
