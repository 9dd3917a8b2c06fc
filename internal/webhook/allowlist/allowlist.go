// Package allowlist decides which URLs webhooks may be sent to. Ingress
// checks a request's webhook_url with it before accepting the request
// (400 webhook_not_allowed), and egress checks every delivery again, at
// the URL and, after resolving the host, at the address it connects to.
// Both build their lists from the same places: the --webhook-allow flag,
// the tenants file's top-level webhook_allow (every tenant) and each
// tenant's own webhook_allow, so both decide alike.
//
// An entry is [scheme://]host[:port][/path-prefix]:
//
//   - scheme: http or https; without one, https only.
//   - host: a DNS name (exactly that name, at whatever address it resolves
//     to, internal ones included: the operator named it); *.domain (its
//     subdomains, at public addresses only, so a name that resolves inside
//     the network is refused); an IPv4 address, an IPv6 address in
//     brackets, or a CIDR prefix in brackets ([10.0.0.0/8]) or alone
//     without scheme, port and path (10.0.0.0/8): URLs naming such an
//     address literally, at it only.
//   - port: a number, or * for any; without one, the scheme's default
//     (443 or 80) only.
//   - path-prefix: the URL's path must be it or continue it after a "/"
//     (/hooks/acme allows /hooks/acme and /hooks/acme/x, not
//     /hooks/acme2); without one, any path.
//
// A URL is allowed when one entry matches its scheme, host, port and path.
// Whatever the entries, URLs are refused that carry user info, that
// name a link-local address (169.254.0.0/16 with the cloud metadata
// service 169.254.169.254, fe80::/10), an unspecified or a multicast
// address, or whose path holds "." or ".." segments or an encoded "/" or
// "\" (a server could read them as another path). localhost and
// *.localhost are allowed only by an entry naming that host exactly.
package allowlist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// ErrNotAllowed marks a webhook target that no entry allows.
var ErrNotAllowed = errors.New("webhook target not allowed")

// List is a parsed allowlist; the zero value and nil allow nothing. It is
// immutable and safe for concurrent use.
type List struct {
	entries []entry
}

type entry struct {
	raw    string
	scheme string       // http or https
	host   string       // an exact lowercase name, or ""
	suffix string       // ".example.com" of *.example.com, or ""
	prefix netip.Prefix // valid for address and CIDR entries
	port   string       // decimal, or "*" for any
	path   string       // "/" for any
}

// Parse reads entries (blank ones are skipped).
func Parse(entries []string) (*List, error) {
	l := &List{}
	for _, raw := range entries {
		s := strings.TrimSpace(raw)
		if s == "" {
			continue
		}
		e, err := parseEntry(s)
		if err != nil {
			return nil, fmt.Errorf("webhook allowlist entry %q: %w", raw, err)
		}
		l.entries = append(l.entries, e)
	}
	return l, nil
}

// Len returns the number of entries.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.entries)
}

// Union returns a list allowing what any of lists allows (nil ones are
// skipped).
func Union(lists ...*List) *List {
	out := &List{}
	for _, l := range lists {
		if l != nil {
			out.entries = append(out.entries, l.entries...)
		}
	}
	return out
}

func defaultPort(scheme string) string {
	if scheme == "http" {
		return "80"
	}
	return "443"
}

func parseEntry(s string) (entry, error) {
	e := entry{scheme: "https", path: "/"}
	if p, err := netip.ParsePrefix(s); err == nil { // a bare CIDR prefix
		e.prefix, e.port = p.Masked(), defaultPort(e.scheme)
		return e, nil
	}
	rest := s
	if i := strings.Index(rest, "://"); i >= 0 {
		e.scheme = strings.ToLower(rest[:i])
		if e.scheme != "http" && e.scheme != "https" {
			return e, fmt.Errorf("scheme must be http or https")
		}
		rest = rest[i+3:]
	}
	auth := rest
	start := 0
	if strings.HasPrefix(rest, "[") {
		if j := strings.Index(rest, "]"); j >= 0 {
			start = j
		}
	}
	if k := strings.Index(rest[start:], "/"); k >= 0 {
		auth, e.path = rest[:start+k], rest[start+k:]
	}
	host, port := auth, ""
	if strings.HasPrefix(auth, "[") {
		j := strings.Index(auth, "]")
		if j < 0 {
			return e, errors.New("unclosed [")
		}
		host = auth[1:j]
		if tail := auth[j+1:]; tail != "" {
			if !strings.HasPrefix(tail, ":") {
				return e, errors.New("want [address]:port")
			}
			port = tail[1:]
		}
		if p, err := netip.ParsePrefix(host); err == nil {
			e.prefix = p.Masked()
		} else if a, err := netip.ParseAddr(host); err == nil {
			e.prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		} else {
			return e, fmt.Errorf("[%s] is neither an address nor a CIDR prefix", host)
		}
	} else {
		if i := strings.LastIndex(auth, ":"); i >= 0 {
			host, port = auth[:i], auth[i+1:]
		}
		host = strings.ToLower(host)
		switch a, err := netip.ParseAddr(host); {
		case err == nil:
			e.prefix = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		case strings.HasPrefix(host, "*."):
			if !validName(host[2:]) {
				return e, fmt.Errorf("%q is not a domain", host[2:])
			}
			e.suffix = host[1:]
		case validName(host):
			e.host = host
		default:
			return e, fmt.Errorf("want [scheme://]host[:port][/path] with host a name, *.domain, an address or a [CIDR prefix]")
		}
	}
	switch port {
	case "":
		e.port = defaultPort(e.scheme)
	case "*":
		e.port = "*"
	default:
		var n int
		if _, err := fmt.Sscanf(port, "%d", &n); err != nil || n < 1 || n > 65535 || fmt.Sprint(n) != port {
			return e, fmt.Errorf("port %q must be 1 to 65535 or *", port)
		}
		e.port = port
	}
	if strings.ContainsAny(e.path, "?#\\") || badPath(e.path) {
		return e, errors.New("path prefix must be a plain path without query, fragment, \".\" or \"..\" segments")
	}
	e.raw = s
	return e, nil
}

func validName(h string) bool {
	if h == "" || len(h) > 253 || strings.HasPrefix(h, ".") || strings.HasSuffix(h, ".") || strings.Contains(h, "..") {
		return false
	}
	for _, c := range h {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' && c != '_' {
			return false
		}
	}
	return true
}

// badPath reports a path with "." or ".." segments.
func badPath(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// pathUnder reports whether path is prefix or continues it after a "/".
func pathUnder(path, prefix string) bool {
	if prefix == "/" || path == prefix {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}

func isLocalhost(host string) bool {
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// Forbidden reports addresses no entry can allow: link-local (the cloud
// metadata service), unspecified and multicast.
func Forbidden(ip netip.Addr) bool {
	ip = ip.Unmap()
	return ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsMulticast() ||
		ip.IsInterfaceLocalMulticast()
}

// CheckString parses raw and checks it (see Check).
func (l *List) CheckString(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: not a URL", ErrNotAllowed)
	}
	return l.Check(u)
}

// Check decides whether u may be called, before resolving its host: nil,
// or an error wrapping ErrNotAllowed that says why (it names the URL's
// parts, never the list's entries).
func (l *List) Check(u *url.URL) error {
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return fmt.Errorf("%w: scheme %q", ErrNotAllowed, u.Scheme)
	}
	if u.User != nil || u.Host == "" {
		return fmt.Errorf("%w: want an absolute URL with a host and no user info", ErrNotAllowed)
	}
	esc := strings.ToLower(u.EscapedPath())
	if strings.Contains(esc, "%2f") || strings.Contains(esc, "%5c") || strings.Contains(u.Path, "\\") || badPath(u.Path) {
		return fmt.Errorf("%w: the path has \".\" or \"..\" segments or an encoded slash", ErrNotAllowed)
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = defaultPort(scheme)
	}
	ip, err := netip.ParseAddr(host)
	isIP := err == nil
	if isIP {
		ip = ip.Unmap()
		if Forbidden(ip) {
			return fmt.Errorf("%w: address %s is never allowed", ErrNotAllowed, ip)
		}
	}
	if l != nil {
		for _, e := range l.entries {
			if e.scheme != scheme || (e.port != "*" && e.port != port) || !pathUnder(path, e.path) {
				continue
			}
			switch {
			case e.prefix.IsValid():
				if isIP && e.prefix.Contains(ip) {
					return nil
				}
			case e.host != "":
				if !isIP && host == e.host {
					return nil
				}
			case e.suffix != "":
				if !isIP && strings.HasSuffix(host, e.suffix) && !isLocalhost(host) {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("%w: %s://%s:%s%s is on no allowlist entry", ErrNotAllowed, scheme, host, port, path)
}

// addressAllowed decides whether host (as the URL named it) may be reached
// at ip: never at a forbidden address; a literal address when an address
// entry holds it; a name at any address when an entry names it exactly,
// at public addresses when a wildcard entry matches it.
func (l *List) addressAllowed(host string, ip netip.Addr) bool {
	ip = ip.Unmap()
	if Forbidden(ip) || l == nil {
		return false
	}
	_, err := netip.ParseAddr(host)
	literal := err == nil
	wild := false
	for _, e := range l.entries {
		switch {
		case literal:
			if e.prefix.IsValid() && e.prefix.Contains(ip) {
				return true
			}
		case e.host != "" && e.host == host:
			return true
		case e.suffix != "" && strings.HasSuffix(host, e.suffix) && !isLocalhost(host):
			wild = true
		}
	}
	return wild && !Internal(ip)
}

// Lookup resolves a host name to addresses.
type Lookup func(ctx context.Context, host string) ([]netip.Addr, error)

// DialContext returns a dial function for an http.Transport that resolves
// a host itself and connects only to addresses the list allows for it
// (see the package doc); lookup nil is the system resolver.
func (l *List) DialContext(d *net.Dialer, lookup Lookup) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		host = strings.ToLower(host)
		if ip, err := netip.ParseAddr(host); err == nil {
			if !l.addressAllowed(host, ip) {
				return nil, fmt.Errorf("%w: address %s", ErrNotAllowed, host)
			}
			return d.DialContext(ctx, network, addr)
		}
		ips, err := lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		lastErr := fmt.Errorf("%w: %s resolves to no allowed address", ErrNotAllowed, host)
		for _, ip := range ips {
			if !l.addressAllowed(host, ip) {
				continue
			}
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
			if err == nil {
				return c, nil
			}
			lastErr = err
		}
		return nil, lastErr
	}
}

// nonPublic are ranges the address tests of netip do not cover that still
// do not lead to the public internet, or may lead back inside (IPv6 forms
// that embed an IPv4 address a gateway translates).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, broadcast
	netip.MustParsePrefix("64:ff9b::/96"),   // NAT64
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("2002::/16"),      // 6to4
	netip.MustParsePrefix("::/96"),          // IPv4-compatible (deprecated)
	netip.MustParsePrefix("2001::/32"),      // Teredo
	netip.MustParsePrefix("100::/64"),       // discard-only
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated)
}

// Internal reports whether ip is not on the public internet.
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || Forbidden(ip) {
		return true
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
