// Package safehttp sends requests to URLs that outsiders chose (approval
// callbacks, webhooks) without letting them reach the server's own network:
// a URL check at submit time and an http.Client that refuses, when it
// connects, every address that is not public unless an allow-list permits
// it. Checking at connect time, on the address actually dialled, is what
// defeats DNS rebinding: a name that resolved to a public address when it
// was checked and to 127.0.0.1 when it is used is refused all the same.
package safehttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// Limits of an outbound request.
const (
	// MaxURL is the longest URL accepted, in bytes.
	MaxURL = 2048
	// MaxBody is the most of a response body that is read.
	MaxBody = 64 << 10
	// Timeout bounds a whole request: connect, TLS, send and read.
	Timeout = 10 * time.Second
)

// ErrRefused is returned (wrapped, with the reason) for a URL or address the
// policy does not allow.
var ErrRefused = errors.New("refused")

// blocked are the ranges that are not the public internet: loopback,
// private, carrier-grade NAT, link-local, multicast, unspecified, reserved,
// documentation and benchmark ranges, and the IPv6 forms that embed an IPv4
// address (NAT64, 6to4, IPv4-compatible; IPv4-mapped addresses are unmapped
// before the check, so ::ffff:10.0.0.1 is 10.0.0.1).
var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network", 0.0.0.0
		"10.0.0.0/8",      // RFC 1918
		"100.64.0.0/10",   // carrier-grade NAT, RFC 6598
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local (cloud metadata lives here)
		"172.16.0.0/12",   // RFC 1918
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.88.99.0/24",  // 6to4 relay anycast
		"192.168.0.0/16",  // RFC 1918
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, and 255.255.255.255
		"::/96",           // unspecified, loopback, IPv4-compatible
		"64:ff9b::/96",    // NAT64
		"64:ff9b:1::/48",  // local NAT64
		"100::/64",        // discard
		"2001::/23",       // IETF protocol assignments (Teredo, ORCHID, ...)
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4
		"fc00::/7",        // unique local, RFC 4193
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// Public reports whether addr is an address of the public internet, that
// is in none of the refused ranges.
func Public(addr netip.Addr) bool {
	addr = addr.Unmap()
	if !addr.IsValid() || addr.Zone() != "" {
		return false
	}
	for _, p := range blocked {
		if p.Contains(addr) {
			return false
		}
	}
	return true
}

// Policy decides which URLs and addresses may be reached. The zero Policy
// allows public addresses only.
type Policy struct {
	nets  []netip.Prefix
	hosts map[string]bool
	// Timeout overrides the package's Timeout for the clients made after
	// it is set (tests).
	Timeout time.Duration
}

// ParseAllow reads an allow-list: comma-separated CIDRs, addresses and host
// names. A CIDR or address permits connecting to it; a host name permits
// connecting to whatever it resolves to (for a receiver on the local network
// known by name). Returns an error naming the first entry that is none of these.
func ParseAllow(s string) (*Policy, error) {
	p := &Policy{hosts: map[string]bool{}}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if pre, err := netip.ParsePrefix(f); err == nil {
			p.nets = append(p.nets, pre.Masked())
			continue
		}
		if a, err := netip.ParseAddr(f); err == nil {
			a = a.Unmap()
			p.nets = append(p.nets, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		if !validHost(f) {
			return nil, fmt.Errorf("%q is not a CIDR, an address or a host name", f)
		}
		p.hosts[strings.ToLower(strings.TrimSuffix(f, "."))] = true
	}
	return p, nil
}

// validHost reports whether s is a DNS name: labels of letters, digits,
// hyphens and underscores, 1 to 63 bytes each, 253 in all.
func validHost(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// AllowsAddr reports whether the policy lets a connection reach addr.
func (p *Policy) AllowsAddr(addr netip.Addr) bool {
	addr = addr.Unmap()
	if p == nil {
		return Public(addr)
	}
	if Public(addr) {
		return true
	}
	for _, n := range p.nets {
		if n.Contains(addr) {
			return true
		}
	}
	return false
}

// allowsHost reports whether host was allowed by name.
func (p *Policy) allowsHost(host string) bool {
	if p == nil {
		return false
	}
	return p.hosts[strings.ToLower(strings.TrimSuffix(host, "."))]
}

// CheckURL parses raw and checks what can be checked without connecting:
// http or https, a host, no user name or password, at most MaxURL bytes,
// and a literal IP address that the policy allows. A host name is checked
// again when connecting, on each address it resolves to. Returns an error
// wrapping ErrRefused, whose text can be shown to whoever gave the URL.
func (p *Policy) CheckURL(raw string) (*url.URL, error) {
	if len(raw) > MaxURL {
		return nil, fmt.Errorf("%w: the URL is longer than %d bytes", ErrRefused, MaxURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: the URL cannot be parsed", ErrRefused)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%w: the URL must be http or https", ErrRefused)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: the URL must not hold a user name or password", ErrRefused)
	}
	host := u.Hostname()
	if host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("%w: the URL has no host", ErrRefused)
	}
	if port := u.Port(); port != "" {
		if n, err := netip.ParseAddrPort("0.0.0.0:" + port); err != nil || n.Port() == 0 {
			return nil, fmt.Errorf("%w: the URL's port is not valid", ErrRefused)
		}
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !p.AllowsAddr(a) {
			return nil, fmt.Errorf("%w: %s is not a public address", ErrRefused, a)
		}
		return u, nil
	}
	if !validHost(host) {
		return nil, fmt.Errorf("%w: %q is not a host name", ErrRefused, host)
	}
	return u, nil
}

// Client returns an http.Client for outside URLs: every connection's
// address is checked against the policy when it is made (after DNS), no
// proxy is taken from the environment (a proxy would connect for us,
// unchecked), redirects are not followed (the 3xx is the answer), and the
// whole request is bounded by Timeout. Read bodies with ReadBody.
func (p *Policy) Client() *http.Client {
	timeout := Timeout
	if p != nil && p.Timeout > 0 {
		timeout = p.Timeout
	}
	checked := &net.Dialer{Timeout: timeout, Control: p.control}
	open := &net.Dialer{Timeout: timeout}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err == nil && p.allowsHost(host) {
			return open.DialContext(ctx, network, addr)
		}
		return checked.DialContext(ctx, network, addr)
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dial,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       30 * time.Second,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// control runs after DNS, just before connect, on the address dialled.
func (p *Policy) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read the address %q", ErrRefused, address)
	}
	if !p.AllowsAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s is not a public address", ErrRefused, ap.Addr().Unmap())
	}
	return nil
}

// ReadBody reads at most MaxBody bytes of body and closes it; truncated
// reports that there was more.
func ReadBody(body io.ReadCloser) (b []byte, truncated bool, err error) {
	defer body.Close()
	b, err = io.ReadAll(io.LimitReader(body, MaxBody+1))
	if len(b) > MaxBody {
		return b[:MaxBody], true, err
	}
	return b, false, err
}
