package allowlist

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestCheck(t *testing.T) {
	l, err := Parse([]string{
		"hooks.example.com",                   // https, 443, any path
		"http://hooks.example.com:8080/acme/", // http on 8080 under /acme/
		"https://*.partner.example/in",        // subdomains, under /in
		"http://127.0.0.1:9000/dev",           // one port and path of loopback
		"http://[203.0.113.0/24]:*",           // a prefix, any port
		"198.51.100.0/24",                     // a bare prefix: https, 443
		"http://[::1]:9001",
		"http://localhost:9002",
		"http://[10.0.0.0/8]", // private, named explicitly
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://hooks.example.com/x", true},
		{"https://HOOKS.example.com:443/x?q=1", true},
		{"https://hooks.example.com:8443/x", false}, // another port
		{"http://hooks.example.com/x", false},       // another scheme
		{"http://hooks.example.com:8080/acme/x", true},
		{"http://hooks.example.com:8080/acme", false}, // prefix ends in "/"
		{"http://hooks.example.com:8080/other", false},
		{"https://evil.hooks.example.com/x", false},
		{"https://a.partner.example/in", true},
		{"https://a.partner.example/in/x", true},
		{"https://a.partner.example/inx", false}, // not at a segment boundary
		{"https://a.partner.example/in/../admin", false},
		{"https://a.partner.example/in/%2e%2e/admin", false},
		{"https://a.partner.example/in%2Fx", false},
		{"https://partner.example/in", false},
		{"http://127.0.0.1:9000/dev", true},
		{"http://127.0.0.1:9000/dev/hook", true},
		{"http://127.0.0.1:9001/dev", false}, // another port of the same host
		{"http://127.0.0.1:9000/metrics", false},
		{"http://127.0.0.1/dev", false},
		{"http://203.0.113.9:1234/x", true},
		{"https://198.51.100.7/x", true},
		{"http://198.51.100.7/x", false},
		{"http://[::1]:9001/x", true},
		{"http://localhost:9002/x", true},
		{"http://localhost:9000/dev", false},
		{"http://10.1.2.3/x", true},
		{"http://user:pw@hooks.example.com/x", false},
		{"http://169.254.169.254/latest/meta-data", false},
		{"http://0.0.0.0:9000/dev", false},
		{"ftp://hooks.example.com/x", false},
	} {
		if err := l.CheckString(tc.url); (err == nil) != tc.ok {
			t.Errorf("Check(%s) = %v, want ok=%v", tc.url, err, tc.ok)
		} else if err != nil && !errors.Is(err, ErrNotAllowed) {
			t.Errorf("Check(%s) = %v, want ErrNotAllowed", tc.url, err)
		}
	}
	// No entry allows a link-local address (the metadata service).
	all, _ := Parse([]string{"http://[0.0.0.0/0]:*", "http://[169.254.0.0/16]"})
	if err := all.CheckString("http://169.254.169.254/"); err == nil {
		t.Error("169.254.169.254 allowed by a list naming it")
	}
	var none *List
	if err := none.CheckString("https://hooks.example.com/"); err == nil {
		t.Error("a nil list allowed a target")
	}
	for _, bad := range []string{"ftp://x.example", "hooks.example.com:0", "hooks.example.com:http", "[10.0.0.0/33]",
		"*", "*.", "http://x.example/a/../b", "http://[10.0.0.1", "http://x.example/a?b", "exa mple.com"} {
		if _, err := Parse([]string{bad}); err == nil {
			t.Errorf("Parse(%q) accepted it", bad)
		}
	}
}

func TestUnion(t *testing.T) {
	a, _ := Parse([]string{"https://a.example"})
	b, _ := Parse([]string{"https://b.example/x"})
	u := Union(a, nil, b)
	for url, ok := range map[string]bool{"https://a.example/": true, "https://b.example/x/y": true, "https://b.example/": false} {
		if err := u.CheckString(url); (err == nil) != ok {
			t.Errorf("union Check(%s) = %v, want ok=%v", url, err, ok)
		}
	}
}

// TestDial: the address a connection goes to is checked after resolving.
func TestDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	l, _ := Parse([]string{"http://*.rebind.example:*", "http://named.example:*", "http://127.0.0.1:*"})
	dial := l.DialContext(&net.Dialer{}, func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	if _, err := dial(t.Context(), "tcp", "x.rebind.example:"+port); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("dial of a wildcard name resolving to loopback: %v, want ErrNotAllowed", err)
	}
	for _, addr := range []string{"named.example:" + port, "127.0.0.1:" + port} {
		c, err := dial(t.Context(), "tcp", addr)
		if err != nil {
			t.Errorf("dial %s: %v, want a connection", addr, err)
		} else {
			c.Close()
		}
	}
	if _, err := dial(t.Context(), "tcp", "10.9.9.9:"+port); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("dial of an unlisted address: %v, want ErrNotAllowed", err)
	}
	meta := l.DialContext(&net.Dialer{}, func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
	})
	if _, err := meta(t.Context(), "tcp", "named.example:80"); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("dial of a named host resolving to the metadata address: %v, want ErrNotAllowed", err)
	}
}

func TestInternal(t *testing.T) {
	// Addresses that embed an IPv4 address a gateway translates, and other
	// non-public ranges, are internal too (found in review: a wildcard name
	// resolving to NAT64 64:ff9b::a9fe:a9fe reached 169.254.169.254).
	for _, addr := range []string{"64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "::a9fe:a9fe", "0.1.2.3",
		"198.18.0.1", "240.0.0.1", "2001::1", "::ffff:10.0.0.1", "127.0.0.1", "169.254.169.254", "fe80::1"} {
		if !Internal(netip.MustParseAddr(addr)) {
			t.Errorf("Internal(%s) = false, want true", addr)
		}
	}
	for _, addr := range []string{"203.0.113.9", "8.8.8.8", "2606:4700::1111"} {
		if Internal(netip.MustParseAddr(addr)) {
			t.Errorf("Internal(%s) = true, want false (public)", addr)
		}
	}
}
