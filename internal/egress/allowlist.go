package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// allowlist says which hosts webhooks may call. Entries are
//
//   - a host name ("hooks.example.com"): that host, at whatever address
//     it resolves to, internal ones included (the operator named it);
//   - a wildcard ("*.example.com"): its subdomains, at public addresses
//     only, so a name that resolves to an internal address (DNS
//     rebinding) is refused;
//   - an IP address or CIDR prefix ("127.0.0.1", "203.0.113.0/24"): URLs
//     naming such an address literally.
//
// Anything else is refused before a connection is made.
type allowlist struct {
	hosts    map[string]bool
	suffixes []string // ".example.com"
	prefixes []netip.Prefix
	// lookup resolves a host name (tests replace it).
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// errNotAllowed marks a webhook target the allowlist refuses.
var errNotAllowed = errors.New("webhook target not on the allowlist")

func newAllowlist(entries []string) (*allowlist, error) {
	a := &allowlist{hosts: map[string]bool{}, lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}}
	for _, raw := range entries {
		e := strings.ToLower(strings.TrimSpace(raw))
		switch {
		case e == "":
			continue
		case strings.HasPrefix(e, "*."):
			a.suffixes = append(a.suffixes, e[1:])
		case strings.Contains(e, "/"):
			p, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("webhook allowlist entry %q: %w", raw, err)
			}
			a.prefixes = append(a.prefixes, p.Masked())
		default:
			if ip, err := netip.ParseAddr(e); err == nil {
				a.prefixes = append(a.prefixes, netip.PrefixFrom(ip, ip.BitLen()))
				continue
			}
			if strings.ContainsAny(e, "*:/ ") {
				return nil, fmt.Errorf("webhook allowlist entry %q: want a host, *.domain, an IP address or a CIDR prefix", raw)
			}
			a.hosts[e] = true
		}
	}
	return a, nil
}

// check decides whether u may be called at all (before resolving).
func (a *allowlist) check(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%w: scheme %q", errNotAllowed, u.Scheme)
	}
	host := strings.ToLower(u.Hostname())
	if ip, err := netip.ParseAddr(host); err == nil {
		if a.ipListed(ip) {
			return nil
		}
		return fmt.Errorf("%w: address %s", errNotAllowed, host)
	}
	if a.hosts[host] {
		return nil
	}
	for _, s := range a.suffixes {
		if strings.HasSuffix(host, s) {
			return nil
		}
	}
	return fmt.Errorf("%w: host %s", errNotAllowed, host)
}

func (a *allowlist) ipListed(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
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

// internal reports whether ip is not on the public internet.
func internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// dialContext resolves the host of addr and connects only to addresses the
// allowlist permits for it: any for a host named exactly or an IP listed,
// public ones only for a wildcard match.
func (a *allowlist) dialContext(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		host = strings.ToLower(host)
		if ip, err := netip.ParseAddr(host); err == nil {
			if !a.ipListed(ip) {
				return nil, fmt.Errorf("%w: address %s", errNotAllowed, host)
			}
			return d.DialContext(ctx, network, addr)
		}
		named := a.hosts[host]
		ips, err := a.lookup(ctx, host)
		if err != nil {
			return nil, err
		}
		lastErr := fmt.Errorf("%w: %s resolves only to internal addresses", errNotAllowed, host)
		for _, ip := range ips {
			if !named && internal(ip) && !a.ipListed(ip) {
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
