package safehttp_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/safehttp"
)

func TestPublic(t *testing.T) {
	t.Parallel()
	refused := map[string]string{
		"Loopback":           "127.0.0.1",
		"LoopbackHigh":       "127.255.0.9",
		"RFC1918Ten":         "10.1.2.3",
		"RFC1918OneSevenTwo": "172.16.0.1",
		"RFC1918OneNineTwo":  "192.168.1.1",
		"CGNAT":              "100.64.0.1",
		"LinkLocalMetadata":  "169.254.169.254",
		"Multicast":          "224.0.0.1",
		"Unspecified":        "0.0.0.0",
		"ThisNetwork":        "0.1.2.3",
		"Broadcast":          "255.255.255.255",
		"Reserved":           "240.0.0.1",
		"Benchmark":          "198.18.0.1",
		"Documentation":      "192.0.2.1",
		"IPv6Loopback":       "::1",
		"IPv6Unspecified":    "::",
		"IPv6UniqueLocal":    "fd00::1",
		"IPv6UniqueLocalFC":  "fc00::1",
		"IPv6LinkLocal":      "fe80::1",
		"IPv6Multicast":      "ff02::1",
		"IPv4MappedLoopback": "::ffff:127.0.0.1",
		"IPv4MappedPrivate":  "::ffff:10.0.0.1",
		"IPv4MappedMetadata": "::ffff:169.254.169.254",
		"IPv4Compatible":     "::127.0.0.1",
		"NAT64":              "64:ff9b::a00:1",
		"SixToFour":          "2002:7f00:1::1",
		"IPv6Documentation":  "2001:db8::1",
	}
	for name, s := range refused {
		t.Run(name, func(t *testing.T) {
			require.False(t, safehttp.Public(netip.MustParseAddr(s)), s)
		})
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"} {
		t.Run("Public "+s, func(t *testing.T) {
			require.True(t, safehttp.Public(netip.MustParseAddr(s)), s)
		})
	}
}

func TestParseAllow(t *testing.T) {
	t.Parallel()
	p, err := safehttp.ParseAllow(" 127.0.0.0/8, 10.0.0.5 ,receiver.internal, ::1 ")
	require.NoError(t, err)
	require.True(t, p.AllowsAddr(netip.MustParseAddr("127.0.0.2")))
	require.True(t, p.AllowsAddr(netip.MustParseAddr("::ffff:127.0.0.2")), "mapped form of an allowed address")
	require.True(t, p.AllowsAddr(netip.MustParseAddr("10.0.0.5")))
	require.False(t, p.AllowsAddr(netip.MustParseAddr("10.0.0.6")))
	require.True(t, p.AllowsAddr(netip.MustParseAddr("::1")))
	require.False(t, p.AllowsAddr(netip.MustParseAddr("192.168.0.1")))

	for _, bad := range []string{"10.0.0.0/33", "not a host!", "-bad.example", "a..b"} {
		t.Run("Refuses "+bad, func(t *testing.T) {
			_, err := safehttp.ParseAllow(bad)
			require.Error(t, err)
		})
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	var open *safehttp.Policy // the zero policy: public addresses only
	for name, raw := range map[string]string{
		"Scheme":        "ftp://example.com/x",
		"NoScheme":      "example.com/x",
		"NoHost":        "https:///x",
		"UserInfo":      "https://user:pw@example.com/x",
		"Loopback":      "http://127.0.0.1:8080/x",
		"MappedLiteral": "http://[::ffff:127.0.0.1]/x",
		"IPv6Loopback":  "http://[::1]/x",
		"Metadata":      "http://169.254.169.254/latest/meta-data",
		"TooLong":       "https://example.com/" + strings.Repeat("a", safehttp.MaxURL),
		"BadPort":       "https://example.com:99999/",
		"JavaScript":    "javascript:alert(1)",
		"BadHost":       "https://exa mple.com/",
	} {
		t.Run("Refuses"+name, func(t *testing.T) {
			_, err := open.CheckURL(raw)
			require.ErrorIs(t, err, safehttp.ErrRefused)
		})
	}
	t.Run("AcceptsPublic", func(t *testing.T) {
		_, err := open.CheckURL("https://agent.example.com:8443/hooks/countersign?x=1")
		require.NoError(t, err)
		_, err = open.CheckURL("http://8.8.8.8/hook")
		require.NoError(t, err)
	})
	t.Run("AllowListPermitsLiteral", func(t *testing.T) {
		p, err := safehttp.ParseAllow("127.0.0.0/8")
		require.NoError(t, err)
		_, err = p.CheckURL("http://127.0.0.1:9/x")
		require.NoError(t, err)
	})
}

// server counts the connections that reached it.
func server(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestClient(t *testing.T) {
	t.Parallel()
	ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }

	t.Run("RefusesLoopbackAtConnect", func(t *testing.T) {
		t.Parallel()
		srv, hits := server(t, ok)
		var p *safehttp.Policy
		_, err := p.Client().Get(srv.URL)
		require.ErrorIs(t, err, safehttp.ErrRefused)
		require.Zero(t, hits.Load(), "never connected")
	})
	t.Run("RefusesNameResolvingToLoopback", func(t *testing.T) {
		t.Parallel()
		// localhost passes the URL check (a name), and is refused when its
		// address is dialled: what DNS rebinding would exploit.
		srv, hits := server(t, ok)
		u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
		var p *safehttp.Policy
		_, err := p.CheckURL(u)
		require.NoError(t, err)
		_, err = p.Client().Get(u)
		require.ErrorIs(t, err, safehttp.ErrRefused)
		require.Zero(t, hits.Load())
	})
	t.Run("AllowListCIDR", func(t *testing.T) {
		t.Parallel()
		srv, hits := server(t, ok)
		p, err := safehttp.ParseAllow("127.0.0.1/32")
		require.NoError(t, err)
		resp, err := p.Client().Get(srv.URL)
		require.NoError(t, err)
		b, _, err := safehttp.ReadBody(resp.Body)
		require.NoError(t, err)
		require.Equal(t, "ok", string(b))
		require.EqualValues(t, 1, hits.Load())
	})
	t.Run("AllowListHostName", func(t *testing.T) {
		t.Parallel()
		srv, hits := server(t, ok)
		p, err := safehttp.ParseAllow("localhost")
		require.NoError(t, err)
		resp, err := p.Client().Get(strings.Replace(srv.URL, "127.0.0.1", "localhost", 1))
		require.NoError(t, err)
		resp.Body.Close()
		require.EqualValues(t, 1, hits.Load())
		// The name is allowed, not the address behind it.
		_, err = p.Client().Get(srv.URL)
		require.ErrorIs(t, err, safehttp.ErrRefused)
	})
	t.Run("RedirectNotFollowed", func(t *testing.T) {
		t.Parallel()
		target, targetHits := server(t, ok)
		srv, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, target.URL, http.StatusFound)
		})
		p, err := safehttp.ParseAllow("127.0.0.1")
		require.NoError(t, err)
		resp, err := p.Client().Get(srv.URL)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusFound, resp.StatusCode)
		require.Zero(t, targetHits.Load())
	})
	t.Run("BodyBounded", func(t *testing.T) {
		t.Parallel()
		srv, _ := server(t, func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(make([]byte, 10*safehttp.MaxBody))
		})
		p, err := safehttp.ParseAllow("127.0.0.1")
		require.NoError(t, err)
		resp, err := p.Client().Get(srv.URL)
		require.NoError(t, err)
		b, truncated, err := safehttp.ReadBody(resp.Body)
		require.NoError(t, err)
		require.True(t, truncated)
		require.Len(t, b, safehttp.MaxBody)
	})
	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		srv, _ := server(t, func(http.ResponseWriter, *http.Request) { <-release })
		t.Cleanup(func() { close(release) })
		p, err := safehttp.ParseAllow("127.0.0.1")
		require.NoError(t, err)
		p.Timeout = 200 * time.Millisecond
		start := time.Now()
		_, err = p.Client().Get(srv.URL)
		require.Error(t, err)
		var te interface{ Timeout() bool }
		require.True(t, errors.As(err, &te) && te.Timeout(), "%v", err)
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("NoProxyFromEnvironment", func(t *testing.T) {
		t.Parallel()
		tr := (&safehttp.Policy{}).Client().Transport.(*http.Transport)
		require.Nil(t, tr.Proxy)
	})
}
