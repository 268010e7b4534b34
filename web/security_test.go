package web_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/web"
)

// postWith posts a form with extra headers.
func postWith(t *testing.T, hc *http.Client, target string, form url.Values, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	versions := func() int {
		v, err := store.PolicyList(ctx, c.Pool)
		require.NoError(t, err)
		return len(v)
	}
	attacker := string(policyExample()) + "\n# the attacker's\n"

	t.Run("CookieTossingIsRefused", func(t *testing.T) {
		admin := c.client(t, "admin@example.com")
		// A sibling subdomain plants the double-submit cookie the old check
		// trusted, and posts the same value in the form.
		u, _ := url.Parse(c.Addr)
		admin.Jar.SetCookies(u, []*http.Cookie{{Name: "_csrf", Value: "planted", Path: "/"}})
		before := versions()
		form := url.Values{"candidate": {attacker}, "_csrf": {"planted"}}
		for _, site := range []string{"same-site", ""} {
			h := map[string]string{}
			if site != "" {
				h["Sec-Fetch-Site"] = site
			}
			resp := postWith(t, admin, c.Addr+"/policy/apply", form, h)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "Sec-Fetch-Site %q", site)
		}
		require.Equal(t, before, versions(), "no policy was activated")
	})

	t.Run("WrongOriginIsRefused", func(t *testing.T) {
		admin := c.client(t, "admin@example.com")
		before := versions()
		for _, h := range []map[string]string{
			{"Origin": "http://evil.example"},
			{"Origin": "null"},
			{"Referer": "http://cs.example.com.evil.example/policy"},
			{"Sec-Fetch-Site": "same-site", "Origin": c.Addr},
			{"Sec-Fetch-Site": "cross-site"},
		} {
			form := url.Values{"candidate": {attacker}, "_csrf": {c.csrf(t, admin, "/policy")}}
			resp := postWith(t, admin, c.Addr+"/policy/apply", form, h)
			require.Equal(t, http.StatusForbidden, resp.StatusCode, "%v", h)
		}
		require.Equal(t, before, versions())
	})

	t.Run("OwnOriginWithTheSessionTokenWorks", func(t *testing.T) {
		admin := c.client(t, "admin@example.com")
		before := versions()
		form := url.Values{"candidate": {attacker}, "_csrf": {c.csrf(t, admin, "/policy")}, "confirm": {sha256Hex(attacker)}}
		resp := postWith(t, admin, c.Addr+"/policy/apply", form, map[string]string{"Origin": c.Addr, "Sec-Fetch-Site": "same-origin"})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, before+1, versions())
		// htmx sends the token as a header instead of a field.
		token := c.csrf(t, admin, "/")
		resp = postWith(t, admin, c.Addr+"/logout", url.Values{}, map[string]string{"X-CSRF-Token": token, "Referer": c.Addr + "/"})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	})

	t.Run("TokenRotatesAtSignIn", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		pre := c.csrf(t, hc, "/login")
		resp := postWith(t, hc, c.Addr+"/login", url.Values{"email": {"reviewer@example.com"}, "password": {password}, "_csrf": {pre}}, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		post := c.csrf(t, hc, "/")
		require.NotEqual(t, pre, post)
		resp = postWith(t, hc, c.Addr+"/logout", url.Values{"_csrf": {pre}}, nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "the token from before sign-in is dead")
	})

	t.Run("NoSessionNoToken", func(t *testing.T) {
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp := postWith(t, hc, c.Addr+"/login", url.Values{"email": {"reviewer@example.com"}, "password": {password}, "_csrf": {"anything"}}, nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
}

// bareServer serves web.New on its own, for settings testapp does not pass.
func bareServer(t *testing.T, d web.Deps) string {
	t.Helper()
	d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(web.New(d).Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func newKey() []byte {
	k := make([]byte, 64)
	_, _ = rand.Read(k)
	return k
}

// signInAs posts the sign-in form from a fresh cookie jar, with extra headers.
func signInAs(t *testing.T, base, email, pw string, header map[string]string) (*http.Client, int) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	c := &console{&testapp.Bundle{Addr: base}}
	token := c.csrf(t, hc, "/login")
	resp := postWith(t, hc, base+"/login", url.Values{"email": {email}, "password": {pw}, "_csrf": {token}}, header)
	return hc, resp.StatusCode
}

func TestSignInThroughProxy(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	_, err := account.Create(ctx, pool, "ann@example.com", "Ann", "reviewer", password, "setup")
	require.NoError(t, err)
	proxies, err := config.ParseCIDRs("127.0.0.1/32")
	require.NoError(t, err)
	keys := [][]byte{newKey()}
	behindProxy := bareServer(t, web.Deps{Pool: pool, SessionKeys: keys, TrustedProxies: proxies})
	direct := bareServer(t, web.Deps{Pool: pool, SessionKeys: keys})
	xff := func(ip string) map[string]string { return map[string]string{"X-Forwarded-For": ip} }

	t.Run("ClientsBehindATrustedProxyAreThrottledApart", func(t *testing.T) {
		for range account.MaxPerAccountIP {
			_, code := signInAs(t, behindProxy, "ann@example.com", "wrong-password", xff("198.51.100.1"))
			require.Equal(t, http.StatusUnauthorized, code)
		}
		_, code := signInAs(t, behindProxy, "ann@example.com", password, xff("198.51.100.1"))
		require.Equal(t, http.StatusTooManyRequests, code, "the guessing client is throttled")
		_, code = signInAs(t, behindProxy, "ann@example.com", password, xff("198.51.100.2"))
		require.Equal(t, http.StatusSeeOther, code, "another client of the same proxy signs in")
		var ips []string
		rows, err := pool.Query(ctx, `SELECT DISTINCT details->>'ip' FROM audit_events WHERE kind IN ('auth.login_failed', 'auth.login') ORDER BY 1`)
		require.NoError(t, err)
		for rows.Next() {
			var ip string
			require.NoError(t, rows.Scan(&ip))
			ips = append(ips, ip)
		}
		require.Equal(t, []string{"198.51.100.1", "198.51.100.2"}, ips)
	})

	t.Run("AnUntrustedPeersForwardedForIsIgnored", func(t *testing.T) {
		_, err := account.Create(ctx, pool, "bob@example.com", "Bob", "reviewer", password, "setup")
		require.NoError(t, err)
		for i := range account.MaxPerAccountIP {
			_, code := signInAs(t, direct, "bob@example.com", "wrong-password", xff("192.0.2."+string(rune('1'+i))))
			require.Equal(t, http.StatusUnauthorized, code)
		}
		_, code := signInAs(t, direct, "bob@example.com", password, xff("192.0.2.99"))
		require.Equal(t, http.StatusTooManyRequests, code, "a forged X-Forwarded-For does not escape the limit")
	})

	t.Run("TooLongIsAFormErrorAndWritesNothing", func(t *testing.T) {
		var events, counters int
		count := func() (int, int) {
			var e, c int
			require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM login_throttle)`).Scan(&e, &c))
			return e, c
		}
		events, counters = count()
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar}
		token := (&console{&testapp.Bundle{Addr: direct}}).csrf(t, hc, "/login")
		resp, err := hc.PostForm(direct+"/login", url.Values{"email": {strings.Repeat("a", 3000) + "@example.com"},
			"password": {"wrong-password"}, "_csrf": {token}})
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
		require.Contains(t, string(body), "That is too long: an email has at most 254 characters")
		e, c := count()
		require.Equal(t, events, e, "no audit event")
		require.Equal(t, counters, c, "no counter")
	})
}

func TestSessionKeyRotation(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	_, err := account.Create(context.Background(), pool, "ann@example.com", "Ann", "reviewer", password, "setup")
	require.NoError(t, err)
	oldKey, newKey := newKey(), newKey()
	before := bareServer(t, web.Deps{Pool: pool, SessionKeys: [][]byte{oldKey}})
	rotated := bareServer(t, web.Deps{Pool: pool, SessionKeys: [][]byte{newKey, oldKey}})
	after := bareServer(t, web.Deps{Pool: pool, SessionKeys: [][]byte{newKey}})
	hc, code := signInAs(t, before, "ann@example.com", password, nil)
	require.Equal(t, http.StatusSeeOther, code)
	status := func(base string) int {
		resp, err := hc.Get(base + "/history")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	// The jar keys cookies by host, not port: every server sees the cookie.
	require.Equal(t, http.StatusSeeOther, status(after), "a server without the old key refuses its cookie")
	hc2, code := signInAs(t, before, "ann@example.com", password, nil)
	require.Equal(t, http.StatusSeeOther, code)
	hc = hc2
	require.Equal(t, http.StatusOK, status(rotated), "the old key is accepted during the grace period")
}

func TestResponseHeaders(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	_, err := account.Create(context.Background(), pool, "ann@example.com", "Ann", "admin", password, "setup")
	require.NoError(t, err)
	keys := [][]byte{newKey()}
	secure := bareServer(t, web.Deps{Pool: pool, SessionKeys: keys, Secure: true})
	plain := bareServer(t, web.Deps{Pool: pool, SessionKeys: keys})

	t.Run("HSTSWheneverSecure", func(t *testing.T) {
		// Plain HTTP here, as behind a TLS-terminating proxy.
		resp, err := http.Get(secure + "/login")
		require.NoError(t, err)
		resp.Body.Close()
		require.Contains(t, resp.Header.Get("Strict-Transport-Security"), "max-age=31536000")
		resp, err = http.Get(plain + "/login")
		require.NoError(t, err)
		resp.Body.Close()
		require.Empty(t, resp.Header.Get("Strict-Transport-Security"))
	})

	t.Run("NoStore", func(t *testing.T) {
		hc, code := signInAs(t, plain, "ann@example.com", password, nil)
		require.Equal(t, http.StatusSeeOther, code)
		for _, path := range []string{"/history", "/history/export?format=csv", "/history/export?format=jsonl"} {
			resp, err := hc.Get(plain + path)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode, path)
			require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), path)
		}
		resp, err := contractClient(t).Get(plain + "/api/v1/audit")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
		resp, err = http.Get(plain + "/static/app.js")
		require.NoError(t, err)
		resp.Body.Close()
		require.NotEqual(t, "no-store", resp.Header.Get("Cache-Control"), "static files may be cached")
	})
}

func TestIdleTimeoutIgnoresLiveRefreshes(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	b := testapp.Start(t, testapp.Options{Web: true, NoWorker: true, Now: now})
	c := &console{b}
	_, err := account.Create(context.Background(), b.Pool, "ann@example.com", "Ann", "reviewer", password, "setup")
	require.NoError(t, err)
	get := func(hc *http.Client, path string, live bool) int {
		req, _ := http.NewRequest(http.MethodGet, c.Addr+path, nil)
		req.Header.Set("HX-Request", "true")
		if live {
			req.Header.Set("X-Live-Refresh", "1")
		}
		resp, err := hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}

	unattended := c.client(t, "ann@example.com")
	for range 3 { // live events refresh the inbox every 20 minutes
		offset.Add(int64(20 * time.Minute))
		if get(unattended, "/inbox/rows", true) != http.StatusOK {
			break
		}
	}
	require.Equal(t, http.StatusUnauthorized, get(unattended, "/inbox/rows", true), "refreshes alone do not keep a session alive")

	working := c.client(t, "ann@example.com")
	for range 3 { // the user filters the inbox every 20 minutes
		offset.Add(int64(20 * time.Minute))
		require.Equal(t, http.StatusOK, get(working, "/inbox/rows", false))
	}
}

func TestEventStreamOutlivesTheWriteTimeout(t *testing.T) {
	t.Parallel()
	c := startConsoleWith(t, testapp.Options{KeepAlive: 100 * time.Millisecond})
	hc := c.client(t, "reviewer@example.com")
	// The same handler behind a server with a short write timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: c.App.Web.Handler(), WriteTimeout: 300 * time.Millisecond}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()

	resp, err := hc.Get(base + "/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(1500 * time.Millisecond)
	start := time.Now()
	for {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "the stream ended after %s", time.Since(start))
			_ = l
		case <-deadline:
			return // still open, five write timeouts later
		}
	}
}

func TestFailedSignInsAreForAdmins(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	// People type passwords into the email field.
	const typed = "Tr0ub4dor-typed-as-email"
	_, err := account.SignIn(ctx, c.Pool, typed, "x", "192.0.2.44")
	require.ErrorIs(t, err, account.ErrBadCredentials)
	admin, viewer := c.client(t, "admin@example.com"), c.client(t, "viewer@example.com")
	body := func(hc *http.Client, path string) string {
		resp, err := hc.Get(c.Addr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	for _, path := range []string{"/history?signins=1", "/history?kind=auth.login_failed", "/history/export?format=csv", "/history/export?format=jsonl"} {
		require.Contains(t, body(admin, path), typed, path)
		b := body(viewer, path)
		require.NotContains(t, b, typed, path)
		require.NotContains(t, b, "192.0.2.44", path)
		require.NotContains(t, b, "no such user", path)
	}
	require.NotContains(t, body(viewer, "/history/export?format=jsonl&actor="+typed), "auth.login_failed",
		"a search by actor does not tell which emails were typed")

	// A hash covers what was typed, and the chain carries it into every later
	// hash: a viewer who had them could test guesses offline. Admins keep them.
	hashes := func(hc *http.Client) (chained, withHash int) {
		for l := range strings.Lines(body(hc, "/history/export?format=jsonl")) {
			var e audit.Line
			require.NoError(t, json.Unmarshal([]byte(l), &e))
			if e.Seq > 0 {
				chained++
			}
			if e.Hash != "" || e.PrevHash != "" {
				withHash++
			}
		}
		return chained, withHash
	}
	require.Eventually(t, func() bool {
		chained, withHash := hashes(admin)
		return chained > 1 && withHash == chained
	}, 10*time.Second, 100*time.Millisecond, "the admin's export carries the chain")
	chained, withHash := hashes(viewer)
	require.Greater(t, chained, 1)
	require.Zero(t, withHash, "no hash in a viewer's JSON Lines")
	records, err := csv.NewReader(strings.NewReader(body(viewer, "/history/export?format=csv"))).ReadAll()
	require.NoError(t, err)
	for _, r := range records[1:] {
		require.Empty(t, r[len(r)-2]+r[len(r)-1], "no hash in a viewer's CSV: %v", r)
	}
	var page struct {
		Events []map[string]any `json:"events"`
	}
	require.Equal(t, http.StatusOK, c.api(t, "reviewer@example.com").do("GET", "/audit", nil, &page))
	require.NotEmpty(t, page.Events)
	for _, e := range page.Events {
		require.NotContains(t, e, "hash")
		require.NotContains(t, e, "prev_hash")
	}

	type events struct {
		Events []struct {
			Actor     string `json:"actor"`
			SubjectID string `json:"subject_id"`
		} `json:"events"`
	}
	for email, want := range map[string]string{"admin@example.com": typed, "reviewer@example.com": "(redacted)"} {
		var out events
		require.Equal(t, http.StatusOK, c.api(t, email).do("GET", "/audit?kind=auth.login_failed", nil, &out))
		require.Len(t, out.Events, 1)
		require.Equal(t, want, out.Events[0].Actor, email)
		require.Equal(t, want, out.Events[0].SubjectID, email)
	}
}

// TestOriginDefaultPorts: an origin names its scheme's default port or not
// (a proxy's, a setting's and a browser's spelling differ); both are the same
// origin. Another port is another origin.
func TestOriginDefaultPorts(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	_, err := account.Create(context.Background(), pool, "ann@example.com", "Ann", "reviewer", password, "setup")
	require.NoError(t, err)
	keys := [][]byte{newKey()}
	for _, tc := range []struct {
		configured, sent string
		want             int
	}{
		{"https://cs.example.com:443", "https://cs.example.com", http.StatusSeeOther},
		{"https://cs.example.com", "https://CS.example.com:443", http.StatusSeeOther},
		{"http://cs.example.com", "http://cs.example.com:80", http.StatusSeeOther},
		{"https://cs.example.com", "https://cs.example.com:8443", http.StatusForbidden},
		{"https://cs.example.com", "http://cs.example.com:443", http.StatusForbidden},
		{"http://cs.example.com", "https://cs.example.com:80", http.StatusForbidden},
	} {
		base := bareServer(t, web.Deps{Pool: pool, SessionKeys: keys, Origins: []string{tc.configured}})
		_, code := signInAs(t, base, "ann@example.com", password, map[string]string{"Origin": tc.sent, "Sec-Fetch-Site": "same-origin"})
		require.Equal(t, tc.want, code, "configured %s, sent %s", tc.configured, tc.sent)
	}
}

// TestExportOutlivesTheWriteTimeout: a large export to a slow reader takes
// longer than the server's write timeout and still arrives whole: each
// stretch of rows gets its own write window.
func TestExportOutlivesTheWriteTimeout(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	const extra = 10000
	_, err := c.Pool.Exec(context.Background(), `INSERT INTO audit_events (actor, kind, subject_type, subject_id, details)
		SELECT 'bulk@example.com', 'run.started', 'run', 'r' || i, jsonb_build_object('workflow', 'bulk', 'pad', repeat('x', 200))
		FROM generate_series(1, $1) i`, extra)
	require.NoError(t, err)

	// The same handler behind a server with a short write timeout, and
	// small socket buffers on both sides, so that the server's writes wait
	// for the slow reader instead of filling the kernel's buffers at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: c.App.Web.Handler(), WriteTimeout: 300 * time.Millisecond,
		ConnContext: func(ctx context.Context, conn net.Conn) context.Context {
			_ = conn.(*net.TCPConn).SetWriteBuffer(64 << 10)
			return ctx
		}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()
	hc := c.client(t, "admin@example.com")
	hc.Transport = checked(t, &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			_ = conn.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return conn, err
	}})

	for _, path := range []string{"/history/export?format=jsonl", "/api/v1/audit/export?format=jsonl"} {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		if strings.HasPrefix(path, "/api/") {
			req.Header.Set("Authorization", "Bearer "+c.api(t, "admin@example.com").token)
		}
		var total int
		require.NoError(t, c.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events`).Scan(&total))
		require.Greater(t, total, extra)
		start := time.Now()
		resp, err := hc.Do(req)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		lines := 0
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if lines++; lines%500 == 0 {
				time.Sleep(50 * time.Millisecond) // a slow reader
			}
		}
		resp.Body.Close()
		require.NoError(t, sc.Err(), path)
		require.Greater(t, time.Since(start), 3*srv.WriteTimeout, "%s: the export took longer than the write timeout", path)
		require.Equal(t, total, lines, "%s: every event arrived", path)
	}
}
