package ingress

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// partialPost opens a connection and sends a message request's headers
// (with key, when not empty) and the first byte of a 100 KB body.
func partialPost(t *testing.T, addr, key string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	auth := ""
	if key != "" {
		auth = "Authorization: Bearer " + key + "\r\n"
	}
	fmt.Fprintf(c, "POST /v1/conversations/c/messages HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", auth)
	return c
}

// answer reads c's response status within d; 0 when the connection was
// closed without one, -1 when nothing came in time.
func answer(c net.Conn, d time.Duration) (status int, code string) {
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return 0, ""
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return -1, ""
		}
		return 0, ""
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, string(b)
}

// TestSlowlorisIsCut: 500 connections that send headers and one byte of
// a body, and 100 that never finish their headers, are all closed soon
// after the body and header timeouts, and their goroutines return.
func TestSlowlorisIsCut(t *testing.T) {
	in := newIngress(t, newCluster(t), func(c *Config) {
		c.Addr = freeAddr(t)
		c.BodyTimeout = 500 * time.Millisecond
		c.ReadHeaderTimeout = 500 * time.Millisecond
		c.MaxConnsPerAddr = -1
		c.MaxConnsPerTenant = -1
	})
	r := runIngress(t, in)
	http.DefaultClient.CloseIdleConnections()
	before := settledGoroutines(t, in)

	start := time.Now()
	var conns []net.Conn
	for range 500 {
		conns = append(conns, partialPost(t, in.cfg.Addr, devKey))
	}
	for range 100 {
		c, err := net.Dial("tcp", in.cfg.Addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(c, "POST /v1/conversations/c/messages HTTP/1.1\r\nHost: x\r\n")
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for _, c := range conns {
		wg.Go(func() {
			defer c.Close()
			st, _ := answer(c, 10*time.Second)
			if st > 0 {
				// After its answer the server must close the connection.
				if n, err := c.Read(make([]byte, 1)); err == nil || n > 0 {
					st = -2
				}
			}
			mu.Lock()
			statuses[st]++
			mu.Unlock()
		})
	}
	wg.Wait()
	took := time.Since(start)
	if statuses[http.StatusRequestTimeout] != 500 || statuses[0] != 100 {
		t.Errorf("answers by status (-1: none within 10s, -2: left open, 0: closed without one): %v; want 500 × 408 and 100 closed", statuses)
	}
	if took > 5*time.Second {
		t.Errorf("the slow connections took %v to close, want well under 5s (timeouts 500ms)", took)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+10 {
		t.Errorf("goroutines: %d before, %d after the connections closed", before, n)
	}
	if err := r.stop(); err != nil {
		t.Log(err) // the stop's outcome is not what this test checks
	}
}

// TestUnauthenticatedBeforeBody: a request without a key (or with a
// wrong one) is answered 401 from its headers, without waiting for a
// body that does not come, and its connection is closed.
func TestUnauthenticatedBeforeBody(t *testing.T) {
	in := newIngress(t, newCluster(t), func(c *Config) { c.Addr = freeAddr(t) })
	runIngress(t, in)
	for _, key := range []string{"", "wrong-key"} {
		c := partialPost(t, in.cfg.Addr, key)
		start := time.Now()
		st, body := answer(c, 3*time.Second)
		c.Close()
		if st != http.StatusUnauthorized || time.Since(start) > 2*time.Second {
			t.Errorf("key %q: status %d (%s) after %v, want 401 at once", key, st, strings.TrimSpace(body), time.Since(start))
		}
	}
}

// alive reports whether the server keeps c open (it sends nothing and
// does not close it within 100ms).
func alive(c net.Conn) bool {
	if err := c.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		return false
	}
	_, err := c.Read(make([]byte, 1))
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// TestTenantConnectionCap: one tenant may have MaxConnsPerTenant requests
// open; more get 429 too_many_connections, other tenants are not
// affected.
func TestTenantConnectionCap(t *testing.T) {
	in := newIngress(t, newCluster(t), func(c *Config) {
		c.Addr = freeAddr(t)
		c.MaxConnsPerAddr = -1
		c.MaxConnsPerTenant = 2
		c.BodyTimeout = 20 * time.Second
	})
	runIngress(t, in)
	http.DefaultClient.CloseIdleConnections()
	// Two requests of tenant dev wait for their bodies: a third is refused.
	held := []net.Conn{partialPost(t, in.cfg.Addr, devKey), partialPost(t, in.cfg.Addr, devKey)}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	waitHeld(t, in, "dev", 2) // both reached their handlers
	c := partialPost(t, in.cfg.Addr, devKey)
	st, body := answer(c, 5*time.Second)
	c.Close()
	if st != http.StatusTooManyRequests || !strings.Contains(body, "too_many_connections") {
		t.Errorf("third open request of one tenant: %d %s, want 429 too_many_connections", st, body)
	}
	// Another tenant is not affected: its request waits for its body.
	c = partialPost(t, in.cfg.Addr, limitedKey)
	held = append(held, c)
	if !alive(c) {
		t.Error("another tenant's request was refused")
	}
	// A slot comes back when a request ends.
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := partialPost(t, in.cfg.Addr, devKey)
		ok := alive(c)
		c.Close()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no slot came back after a request ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAddressConnectionCap: one address may hold MaxConnsPerAddr
// connections; more are closed as soon as they are accepted, until one
// closes.
func TestAddressConnectionCap(t *testing.T) {
	in := newIngress(t, newCluster(t), func(c *Config) {
		c.Addr = freeAddr(t)
		c.MaxConnsPerAddr = 3
	})
	runIngress(t, in)
	http.DefaultClient.CloseIdleConnections()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	// Open three idle connections that the server keeps (the poll of
	// runIngress may still hold a slot for a moment: retry).
	deadline := time.Now().Add(10 * time.Second)
	for len(held) < 3 {
		c, err := net.Dial("tcp", in.cfg.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if alive(c) {
			held = append(held, c)
			continue
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("could not open three connections")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 3 {
		extra, err := net.Dial("tcp", in.cfg.Addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(extra, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		st, _ := answer(extra, 3*time.Second)
		extra.Close()
		if st != 0 {
			t.Fatalf("a fourth connection from one address: status %d, want it closed without an answer", st)
		}
	}
	held[0].Close()
	deadline = time.Now().Add(5 * time.Second)
	for {
		res, err := http.Get("http://" + in.cfg.Addr + "/healthz")
		if err == nil {
			res.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection accepted after one closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()
}

// waitHeld waits (5s at most) until tenant holds n of its connection slots.
func waitHeld(t *testing.T, in *Ingress, tenant string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		in.tenantConns.mu.Lock()
		held := in.tenantConns.n[tenant]
		in.tenantConns.mu.Unlock()
		if held == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant %s holds %d connection slots, want %d", tenant, held, n)
		}
	}
}

// settledGoroutines waits until ingress reaches Kafka and its background
// work has started (the count holds still for 200ms; 5s at most), then
// returns the number of goroutines: the client's connections start
// lazily, and must not count as connections the test left behind.
func settledGoroutines(t *testing.T, in *Ingress) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/readyz", nil)
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n && in.Ready(req) == nil {
			break
		}
		n = m
	}
	return n
}
