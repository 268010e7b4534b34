package web_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/vocab"
)

func TestPages(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	reviewer := c.client(t, "reviewer@example.com")

	// 55 explicit emails and one batched ticket update: more than one page.
	var ids []string
	for i := range 55 {
		run, _ := c.startRun(t, "support_triage", fmt.Sprintf("T-%02d", i), demo.Ticket{ID: fmt.Sprint(i), Customer: "a@example.com",
			Subject: "How do I login?", Body: "password"}, "api@example.com")
		ids = append(ids, run.ID)
	}
	_, batched := c.startRun(t, "support_triage", "T-b", demo.Ticket{ID: "b", Customer: "a@example.com", Subject: "Delivery time", Body: "when?"}, "api@example.com")
	require.Equal(t, vocab.TierBatched, batched.Tier)

	t.Run("InboxPagesWithoutDuplicates", func(t *testing.T) {
		doc, status := c.get(t, reviewer, "/")
		require.Equal(t, 200, status)
		require.Equal(t, "Explicit: 55", strings.Join(strings.Fields(doc.Find(`[data-testid=count-explicit]`).Text()), " "))
		first := doc.Find(`[data-testid=inbox-row]`)
		require.Equal(t, 50, first.Length())
		require.Equal(t, "Explicit", first.First().Find(`[data-testid=tier]`).Text(), "explicit first")
		next, ok := doc.Find(`[data-testid=next-page]`).Attr("href")
		require.True(t, ok)
		doc2, status := c.get(t, reviewer, next)
		require.Equal(t, 200, status)
		second := doc2.Find(`[data-testid=inbox-row]`)
		require.Equal(t, 6, second.Length())
		require.Equal(t, "Batched", second.Last().Find(`[data-testid=tier]`).Text(), "batched after explicit")
		seen := map[string]bool{}
		for _, s := range append(first.Nodes, second.Nodes...) {
			for _, a := range s.Attr {
				if a.Key == "data-id" {
					require.False(t, seen[a.Val], "row %s twice", a.Val)
					seen[a.Val] = true
				}
			}
		}
		require.Len(t, seen, 56)
		require.Zero(t, doc2.Find(`[data-testid=next-page]`).Length())
	})

	t.Run("RunsPages", func(t *testing.T) {
		for _, filter := range []string{"", "workflow=support_triage"} {
			doc, status := c.get(t, reviewer, "/runs?"+filter)
			require.Equal(t, 200, status)
			require.Equal(t, 50, doc.Find(`[data-testid=run-row]`).Length())
			next, ok := doc.Find(`[data-testid=next-page]`).Attr("href")
			require.True(t, ok)
			want := "/runs?after="
			if filter != "" {
				want = "/runs?" + filter + "&after="
			}
			require.True(t, strings.HasPrefix(next, want), "the filters, then the cursor: %s", next)
			doc2, status := c.get(t, reviewer, next)
			require.Equal(t, 200, status)
			require.Positive(t, doc2.Find(`[data-testid=run-row]`).Length(), "the older runs")
		}
	})

	t.Run("InboxFilters", func(t *testing.T) {
		doc, _ := c.get(t, reviewer, "/?tier=batched")
		require.Equal(t, 1, doc.Find(`[data-testid=inbox-row]`).Length())
		doc, _ = c.get(t, reviewer, "/?rule=outbound-email&workflow=support_triage")
		require.Equal(t, 50, doc.Find(`[data-testid=inbox-row]`).Length())
		doc, _ = c.get(t, reviewer, "/?age=24h")
		require.Equal(t, 0, doc.Find(`[data-testid=inbox-row]`).Length())
		require.Equal(t, 1, doc.Find(`[data-testid=inbox-empty]`).Length())
		for _, bad := range []string{"/?tier=gold", "/?age=soon", "/?after=bm90LWpzb24"} {
			_, status := c.get(t, reviewer, bad)
			require.Equal(t, http.StatusBadRequest, status, bad)
		}
		resp, err := reviewer.Get(c.Addr + "/inbox/rows?tier=batched")
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, 1, strings.Count(string(body), `data-testid="inbox-row"`), "the live-refresh fragment")
		require.NotContains(t, string(body), "<html", "a fragment, not a page")
	})

	t.Run("Review", func(t *testing.T) {
		req := c.PendingRequest(t, ids[0])
		doc, status := c.get(t, reviewer, "/requests/"+req.ID)
		require.Equal(t, 200, status)
		require.Equal(t, req.Summary, doc.Find(`[data-testid=summary]`).Text())
		require.Equal(t, "email.send", doc.Find(`[data-testid=action-kind]`).Text())
		require.Contains(t, doc.Find(`[data-testid=policy]`).Text(), "outbound-email")
		require.Contains(t, doc.Find(`[data-testid=approvals]`).Text(), "0 of 1 approvals")
		require.Equal(t, 4, doc.Find(`[data-testid=step]`).Length(), "the run's timeline")
		hash, _ := doc.Find(`input[name=payload_hash]`).Attr("value")
		require.Equal(t, req.PayloadHash, hash, "the form carries the payload hash")
		_, hasDisable := doc.Find(`[data-testid=summary]`).Attr("hx-disable")
		require.True(t, hasDisable, "model text sits where htmx is disabled")

		_, status = c.get(t, reviewer, "/requests/00000000-0000-0000-0000-000000000000")
		require.Equal(t, 404, status)
		_, status = c.get(t, reviewer, "/requests/nonsense")
		require.Equal(t, 404, status)

		viewer := c.client(t, "viewer@example.com")
		doc, _ = c.get(t, viewer, "/requests/"+req.ID)
		require.Contains(t, doc.Find(`[data-testid=cannot-decide]`).Text(), "Viewers can read")
		require.Zero(t, doc.Find(`[data-testid=decision-form]`).Length())
		resp, _ := c.post(t, viewer, "/requests/"+req.ID, "/requests/"+req.ID+"/decision", url.Values{"verdict": {"approve"}, "payload_hash": {req.PayloadHash}})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	})

	t.Run("DecisionErrorsKeepTheForm", func(t *testing.T) {
		req := c.PendingRequest(t, ids[1])
		page := "/requests/" + req.ID
		resp, body := c.post(t, reviewer, page, page+"/decision", url.Values{"verdict": {"edit"}, "payload_hash": {req.PayloadHash},
			"edited_params": {`{"to": 5, "subject": "x", "body": "y"}`}, "comment": {"kept"}})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
		require.Contains(t, body, "must stay a string")
		require.Contains(t, body, `value="kept"`, "what the reviewer typed survives")
		resp, body = c.post(t, reviewer, page, page+"/decision", url.Values{"verdict": {"edit"}, "payload_hash": {req.PayloadHash}, "edited_params": {`not json`}})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
		require.Contains(t, body, "not a JSON object")
		resp, body = c.post(t, reviewer, page, page+"/decision", url.Values{"verdict": {"approve"}, "payload_hash": {"0000"}})
		require.Equal(t, http.StatusConflict, resp.StatusCode)
		require.Contains(t, body, "changed since it was shown")
		resp, _ = c.post(t, reviewer, page, page+"/decision", url.Values{"verdict": {"approve"}, "payload_hash": {req.PayloadHash}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		resp, body = c.post(t, reviewer, page, page+"/decision", url.Values{"verdict": {"approve"}, "payload_hash": {req.PayloadHash}})
		require.Equal(t, http.StatusConflict, resp.StatusCode, "a double submit")
		require.Contains(t, body, "Already decided (approved) by reviewer@example.com at")
	})

	t.Run("CSRF", func(t *testing.T) {
		req := c.PendingRequest(t, ids[2])
		form := url.Values{"verdict": {"approve"}, "payload_hash": {req.PayloadHash}}
		resp, err := reviewer.PostForm(c.Addr+"/requests/"+req.ID+"/decision", form)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "no token")
		form.Set("_csrf", c.csrf(t, reviewer, "/"))
		r, _ := http.NewRequest("POST", c.Addr+"/requests/"+req.ID+"/decision", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err = reviewer.Do(r)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "a browser's cross-site POST, even with a token")
		got, err := store.RequestGet(context.Background(), c.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestPending, got.Status)
	})

	t.Run("SecurityHeaders", func(t *testing.T) {
		resp, err := reviewer.Get(c.Addr + "/")
		require.NoError(t, err)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		require.Contains(t, csp, "script-src 'self'")
		require.NotContains(t, csp, "unsafe-inline")
		require.Contains(t, csp, "frame-ancestors 'none'")
		require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		require.Equal(t, "same-origin", resp.Header.Get("Referrer-Policy"))
		require.Empty(t, resp.Header.Get("Strict-Transport-Security"), "HSTS only under TLS")
		for _, ck := range reviewer.Jar.Cookies(mustURL(c.Addr)) {
			require.NotEqual(t, "", ck.Value, ck.Name)
		}
		big := strings.Repeat("x", 2<<20)
		resp, err = reviewer.Post(c.Addr+"/login", "application/x-www-form-urlencoded", strings.NewReader("email="+big))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	})

	t.Run("Runs", func(t *testing.T) {
		doc, status := c.get(t, reviewer, "/runs?status=waiting_human&workflow=support_triage")
		require.Equal(t, 200, status)
		require.Equal(t, 50, doc.Find(`[data-testid=run-row]`).Length())
		// Each waiting run shows what it proposes and links to its request.
		first := doc.Find(`[data-testid=run-row]`).First()
		href, _ := first.Find(`[data-testid=run-action-link]`).Attr("href")
		require.Regexp(t, `^/requests/[0-9a-f-]{36}$`, href)
		require.NotEmpty(t, strings.TrimSpace(first.Find(`[data-testid=run-action-link]`).Text()))
		require.Equal(t, 1, first.Find(`[data-testid=run-action-pending]`).Length())
		rows, _ := c.get(t, reviewer, "/runs/rows?status=waiting_human&workflow=support_triage")
		require.Equal(t, 50, rows.Find(`[data-testid=run-row]`).Length(), "the live fragment has the page's filters")
		require.Zero(t, rows.Find(`[data-testid=run-filters]`).Length(), "and only the table")
		require.Equal(t, "v1", doc.Find(`[data-testid=run-row] [data-testid=run-version]`).First().Text(), "each run shows its workflow version")
		doc, _ = c.get(t, reviewer, "/runs?key=T-0")
		require.Equal(t, 10, doc.Find(`[data-testid=run-row]`).Length(), "T-00 to T-09")
		_, status = c.get(t, reviewer, "/runs?status=snoozing")
		require.Equal(t, 400, status)
		doc, _ = c.get(t, reviewer, "/runs/"+ids[3])
		require.Equal(t, 4, doc.Find(`[data-testid=step]`).Length())
		require.Equal(t, "v1", doc.Find(`[data-testid=run] [data-testid=run-version]`).Text())
		require.Zero(t, doc.Find(`[data-testid=cancel-run]`).Length(), "only admins cancel")
		admin := c.client(t, "admin@example.com")
		doc, _ = c.get(t, admin, "/runs/"+ids[3])
		require.Equal(t, 1, doc.Find(`[data-testid=cancel-run]`).Length())
		resp, _ := c.post(t, admin, "/runs/"+ids[3], "/runs/"+ids[3]+"/cancel", url.Values{})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "cancelling without its confirmation is refused")
		run, err := store.RunGet(context.Background(), c.Pool, ids[3])
		require.NoError(t, err)
		require.False(t, run.Status.Final(), "and cancels nothing")
		resp, _ = c.post(t, admin, "/runs/"+ids[3], "/runs/"+ids[3]+"/cancel", url.Values{"confirm": {"yes"}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		resp, _ = c.post(t, admin, "/runs", "/runs/"+ids[3]+"/cancel", url.Values{"confirm": {"yes"}})
		require.Equal(t, http.StatusConflict, resp.StatusCode)
		resp, _ = c.post(t, reviewer, "/runs", "/runs/"+ids[4]+"/cancel", url.Values{})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	})

	t.Run("Policy", func(t *testing.T) {
		doc, _ := c.get(t, reviewer, "/policy")
		require.Contains(t, doc.Find(`[data-testid=active-version]`).Text(), "Stored version 1 is active")
		require.Zero(t, doc.Find(`[data-testid=apply]`).Length(), "only admins activate")
		strict := "version: 1\nrules:\n  - name: everything-explicit\n    when: 'true'\n    tier: explicit\n"
		approver := c.client(t, "approver@example.com") // simulation is for approvers and admins
		resp, body := c.post(t, approver, "/policy", "/policy/simulate", url.Values{"candidate": {strict}, "since": {"24h"}})
		require.Equal(t, 200, resp.StatusCode)
		require.Contains(t, body, `data-testid="simulation"`)
		require.Contains(t, body, "<strong>1</strong> decided differently (1 in another tier)", "the batched ticket would become explicit")
		resp, body = c.post(t, approver, "/policy", "/policy/simulate", url.Values{"candidate": {"version: 1\nrules:\n  - name: a\n    when: action.knd == 1\n    tier: auto\n"}, "since": {"24h"}})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
		require.Contains(t, body, `no field &#34;knd&#34;`)
		resp, _ = c.post(t, reviewer, "/policy", "/policy/apply", url.Values{"candidate": {strict}})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		admin := c.client(t, "admin@example.com")
		resp, _ = c.post(t, admin, "/policy", "/policy/apply", url.Values{"candidate": {strict}, "confirm": {sha256Hex(strict)}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		doc, _ = c.get(t, admin, "/policy")
		require.Contains(t, doc.Find(`[data-testid=active-version]`).Text(), "Stored version 2 is active, activated by admin@example.com")
	})
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestSessions(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()

	t.Run("LogoutEndsEverySession", func(t *testing.T) {
		a, b := c.client(t, "reviewer@example.com"), c.client(t, "reviewer@example.com")
		resp, _ := c.post(t, a, "/", "/logout", url.Values{})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		resp, err := b.Get(c.Addr + "/")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "/login", resp.Header.Get("Location"))
	})

	t.Run("DisablingEndsSessions", func(t *testing.T) {
		hc := c.client(t, "approver2@example.com")
		require.NoError(t, account.SetDisabled(ctx, c.Pool, "approver2@example.com", true, "admin"))
		resp, err := hc.Get(c.Addr + "/")
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	})

	t.Run("SignInFailures", func(t *testing.T) {
		jar := c.client(t, "admin@example.com").Jar
		_ = jar
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		hc.Jar, _ = newJar()
		token := c.csrf(t, hc, "/login")
		resp, err := hc.PostForm(c.Addr+"/login", url.Values{"email": {"viewer@example.com"}, "password": {"wrong"}, "_csrf": {token}})
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

		// The limits, at the account package, with addresses the HTTP test cannot fake.
		for range account.MaxPerAccountIP {
			_, err := account.SignIn(ctx, c.Pool, "admin@example.com", "guess", "203.0.113.7")
			require.ErrorIs(t, err, account.ErrBadCredentials)
		}
		_, err = account.SignIn(ctx, c.Pool, "admin@example.com", password, "203.0.113.7")
		require.ErrorIs(t, err, account.ErrThrottled, "the attacker's address is throttled for that account")
		u, err := account.SignIn(ctx, c.Pool, "admin@example.com", password, "198.51.100.2")
		require.NoError(t, err, "the real user elsewhere is not locked out")
		require.Equal(t, "admin@example.com", u.Email)
		var events int
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE kind IN ('auth.login_failed', 'auth.login', 'auth.login_throttled', 'auth.logout')`).Scan(&events))
		require.GreaterOrEqual(t, events, 8)
	})
}

// TestBadInputIsA4xx sends the console and the API malformed input of every
// kind that reached the database before: none may be a 500.
func TestBadInputIsA4xx(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	hc := c.client(t, "admin@example.com")
	api := c.api(t, "admin@example.com")
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, path := range []string{
		"/?after=" + b64(`{"Rank":1,"Deadline":"infinity","CreatedAt":"2026-01-01T00:00:00Z","ID":"nope"}`),
		"/?after=" + b64(`{"Rank":"x"}`),
		"/runs?after=" + b64(`{"t":"2026-01-01T00:00:00Z","id":"nope"}`),
		"/batches/x/progress?decision=nope", "/batches/00000000-0000-0000-0000-000000000000?decision=nope",
		"/batches/nope", "/requests/nope", "/runs/nope", "/runs/nope/status",
		"/history?kind=%00", "/?workflow=%ff%fe", "/runs?key=%00", "/history?before=abc",
	} {
		resp, err := hc.Get(c.Addr + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.True(t, resp.StatusCode >= 400 && resp.StatusCode < 500, "%s: %d", path, resp.StatusCode)
	}
	for _, path := range []string{"/runs?after=" + b64(`{"t":"2026-01-01T00:00:00Z","id":"nope"}`), "/requests?status=%00", "/audit?actor=%ff", "/batches/nope"} {
		var e apiErr
		code := api.do("GET", path, nil, &e)
		require.True(t, code >= 400 && code < 500, "%s: %d", path, code)
	}
	var e apiErr
	require.Equal(t, 400, api.do("POST", "/runs", `{"workflow":"support_triage","business_key":"k\u0000"}`, &e))
	require.Contains(t, e.Error.Message, "NUL")
	resp, body := c.post(t, hc, "/", "/requests/00000000-0000-0000-0000-000000000000/decision", url.Values{"verdict": {"approve"}, "comment": {"a\x00b"}})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
}

func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	b := testapp.Start(t, testapp.Options{Web: true, NoWorker: true, Now: now})
	c := &console{b}
	_, err := account.Create(context.Background(), b.Pool, "ann@example.com", "Ann", "reviewer", password, "setup")
	require.NoError(t, err)
	status := func(hc *http.Client) int {
		resp, err := hc.Get(c.Addr + "/")
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}

	idle := c.client(t, "ann@example.com")
	require.Equal(t, http.StatusOK, status(idle))
	offset.Add(int64(31 * time.Minute))
	require.Equal(t, http.StatusSeeOther, status(idle), "30 minutes without a request end the session")

	busy := c.client(t, "ann@example.com")
	for range 35 { // a request every 20 minutes keeps it alive, up to 12 hours
		offset.Add(int64(20 * time.Minute))
		require.Equal(t, http.StatusOK, status(busy))
	}
	offset.Add(int64(20 * time.Minute))
	require.Equal(t, http.StatusSeeOther, status(busy), "12 hours after sign-in the session ends whatever the activity")
}

func TestEventStreamEndsWithTheSession(t *testing.T) {
	t.Parallel()
	c := startConsoleWith(t, testapp.Options{KeepAlive: 100 * time.Millisecond})
	hc := c.client(t, "reviewer@example.com")
	resp, err := hc.Get(c.Addr + "/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	ended := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, resp.Body); close(ended) }()

	other := c.client(t, "reviewer@example.com")
	r, _ := c.post(t, other, "/", "/logout", url.Values{})
	require.Equal(t, http.StatusSeeOther, r.StatusCode)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream outlived the session")
	}
}
