package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
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
	"github.com/countersign/countersign/web"
)

// call sends an API request with a bearer token and returns the status and
// the decoded error, if the answer is one.
func call(t *testing.T, base, token, method, path string, body any) (int, apiErr) {
	t.Helper()
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, base+"/api/v1"+path, r)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := contractClient(t).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var e apiErr
	if resp.StatusCode >= 400 {
		require.NoError(t, json.Unmarshal(raw, &e), string(raw))
	}
	return resp.StatusCode, e
}

func without(all []string, drop ...string) []string {
	var out []string
	for _, s := range all {
		if !slices.Contains(drop, s) {
			out = append(out, s)
		}
	}
	return out
}

func TestAPITokenScopes(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ticket := demo.Ticket{ID: "T-1", Customer: "ada@example.com", Subject: "Refund", Body: "broken", OrderTotal: 900}
	run, req := c.startRun(t, "support_triage", "T-1", ticket, "someone@example.com")
	const none = "00000000-0000-0000-0000-000000000000"
	const anyRefusal = -1 // a 4xx of the handler's own, not 401 or 403

	// POST /runs answers 201 only for a new run, so its row also shows that
	// the refused call before it started nothing.
	// An approval of the user the rows' tokens belong to, for its GET row.
	filer := c.apiScoped(t, "approver@example.com", account.ScopeApprovalsWrite)
	var filed struct{ ID string }
	require.Equal(t, 200, filer.do("POST", "/approvals", map[string]any{"idempotency_key": "scopes-1",
		"action": map[string]any{"kind": "search", "summary": "Look up T-1"}}, &filed))
	routes := []struct {
		method, path, scope string
		body                any
		want                int
	}{
		{"POST", "/runs", account.ScopeRunsWrite, map[string]any{"workflow": "support_triage", "business_key": "T-2", "input": ticket}, 201},
		{"GET", "/runs", account.ScopeRunsRead, nil, 200},
		{"GET", "/runs/" + run.ID, account.ScopeRunsRead, nil, 200},
		// Kept for the run's wait: it proposes no event wait, so it stays waiting.
		{"POST", "/runs/" + run.ID + "/events/scope_check", account.ScopeRunsWrite, map[string]any{"data": 1, "idempotency_key": "k"}, 202},
		// The run waits: past the scope, refused by the handler, flagging nothing.
		{"POST", "/runs/" + run.ID + "/unusable", account.ScopeRunsFlag, map[string]any{"category": "other", "reason": "x"}, 409},
		{"GET", "/requests", account.ScopeRequestsRead, nil, 200},
		{"GET", "/requests/" + req.ID, account.ScopeRequestsRead, nil, 200},
		// Undecided: no receipt yet.
		{"GET", "/requests/" + req.ID + "/receipt", account.ScopeRequestsRead, nil, 404},
		// An invalid verdict: past the scope, refused by the handler, deciding nothing.
		{"POST", "/requests/" + req.ID + "/decision", account.ScopeDecide, map[string]any{"verdict": "maybe", "payload_hash": req.PayloadHash}, 422},
		{"GET", "/batches", account.ScopeRequestsRead, nil, 200},
		{"GET", "/batches/" + none, account.ScopeRequestsRead, nil, 404},
		{"POST", "/batches/" + none + "/decision", account.ScopeDecide, map[string]any{"verdict": "reject", "reason": "no"}, anyRefusal},
		{"GET", "/audit", account.ScopeAuditRead, nil, 200},
		{"GET", "/audit/export?format=jsonl", account.ScopeAuditRead, nil, 200},
		{"POST", "/approvals", account.ScopeApprovalsWrite, map[string]any{"idempotency_key": "scopes-2",
			"action": map[string]any{"kind": "search", "summary": "Look up T-2"}}, 200},
		{"GET", "/approvals/" + filed.ID, account.ScopeApprovalsWrite, nil, 200},
	}
	// Routes that another scope opens too: the token lacking the row's scope lacks these as well.
	alsoOpens := map[string][]string{"GET /api/v1/approvals/:id": {account.ScopeRequestsRead}}

	// pattern is the route a row calls, as Echo lists it.
	pattern := func(method, path string) string {
		return method + " /api/v1" + regexp.MustCompile(`/[0-9a-f-]{36}`).ReplaceAllString(
			regexp.MustCompile(`/events/[^/?]+`).ReplaceAllString(strings.Split(path, "?")[0], "/events/:name"), "/:id")
	}
	// Public routes need no token; TestReceiptKeys calls them.
	public := []string{"GET /api/v1/receipts/keys"}
	t.Run("EveryRouteIsInTheTable", func(t *testing.T) {
		listed := public
		for _, r := range routes {
			listed = append(listed, pattern(r.method, r.path))
		}
		require.ElementsMatch(t, web.APIRoutes(), listed, "each API route needs a scope and a row here")
	})

	for _, r := range routes {
		t.Run(pattern(r.method, r.path), func(t *testing.T) {
			// Without: every other scope, so that only the missing one can refuse.
			lacking := c.apiScoped(t, "approver@example.com", without(account.ScopeNames(), append([]string{r.scope}, alsoOpens[pattern(r.method, r.path)]...)...)...)
			code, e := call(t, c.Addr, lacking.token, r.method, r.path, r.body)
			require.Equal(t, http.StatusForbidden, code)
			require.Equal(t, "forbidden", e.Error.Code)
			require.Contains(t, e.Error.Message, "lacks the "+r.scope)

			// With: that scope alone is enough to reach the handler.
			with := c.apiScoped(t, "approver@example.com", r.scope)
			code, e = call(t, c.Addr, with.token, r.method, r.path, r.body)
			if r.want == anyRefusal {
				require.True(t, code >= 400 && code < 500 && code != 401 && code != 403, "%d %+v", code, e)
			} else {
				require.Equal(t, r.want, code, "%+v", e)
			}
		})
	}

	t.Run("AgentCannotDecide", func(t *testing.T) {
		// An agent that starts runs and reads requests, as an approver user,
		// still may not approve.
		agent := c.apiScoped(t, "approver@example.com", account.ScopeRunsWrite, account.ScopeRunsRead, account.ScopeRequestsRead)
		code, e := call(t, c.Addr, agent.token, "POST", "/requests/"+req.ID+"/decision",
			map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash})
		require.Equal(t, http.StatusForbidden, code)
		require.Contains(t, e.Error.Message, "decide")
		got, err := store.RequestGet(context.Background(), c.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestPending, got.Status, "nothing was decided")
	})
}

func TestAPITokenLifecycle(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	b := testapp.Start(t, testapp.Options{Web: true, NoWorker: true, Now: now})
	ctx := context.Background()
	_, err := account.Create(ctx, b.Pool, "ann@example.com", "Ann", "reviewer", password, "setup")
	require.NoError(t, err)
	mk := func(life time.Duration) (*store.Token, string) {
		tok, secret, err := account.CreateToken(ctx, b.Pool, account.TokenParams{Email: "ann@example.com", Name: "bot",
			Scopes: []string{account.ScopeRunsRead}, ExpiresIn: life, By: "setup"})
		require.NoError(t, err)
		require.Regexp(t, `^cs_[0-9a-f]{8}_[0-9a-f]{64}$`, secret)
		require.True(t, strings.HasPrefix(secret, tok.PublicID+"_"), "the handle is the secret's visible prefix")
		return tok, secret
	}
	lastUsed := func(id string) *time.Time {
		tokens, err := account.ListTokens(ctx, b.Pool, "ann@example.com")
		require.NoError(t, err)
		for _, tk := range tokens {
			if tk.PublicID == id {
				return tk.LastUsedAt
			}
		}
		t.Fatalf("no token %s", id)
		return nil
	}
	get := func(secret string) (int, apiErr) { return call(t, b.Addr, secret, "GET", "/runs", nil) }

	t.Run("LastUsed", func(t *testing.T) {
		tok, secret := mk(0)
		require.Nil(t, lastUsed(tok.PublicID))
		code, _ := get(secret)
		require.Equal(t, 200, code)
		first := lastUsed(tok.PublicID)
		require.NotNil(t, first)
		// Other subtests move the clock too, so steps are measured from here.
		start := now()
		require.WithinDuration(t, start, *first, 5*time.Second)
		code, _ = get(secret)
		require.Equal(t, 200, code)
		require.Equal(t, *first, *lastUsed(tok.PublicID), "a second call within a minute writes nothing")
	})

	t.Run("Expiry", func(t *testing.T) {
		_, secret := mk(time.Hour)
		code, _ := get(secret)
		require.Equal(t, 200, code)
		offset.Add(int64(61 * time.Minute))
		code, e := get(secret)
		require.Equal(t, http.StatusUnauthorized, code)
		require.Equal(t, "unauthorized", e.Error.Code)
		require.Contains(t, e.Error.Message, "expired")
	})

	t.Run("LastUsedAfterAMinute", func(t *testing.T) {
		tok, secret := mk(0)
		code, _ := get(secret)
		require.Equal(t, 200, code)
		first := *lastUsed(tok.PublicID)
		offset.Add(int64(2 * time.Minute))
		code, _ = get(secret)
		require.Equal(t, 200, code)
		require.True(t, lastUsed(tok.PublicID).After(first.Add(time.Minute)), "a call a minute later is recorded")
	})

	t.Run("RevocationAtOnce", func(t *testing.T) {
		tok, secret := mk(0)
		code, _ := get(secret)
		require.Equal(t, 200, code)
		_, err := account.RevokeToken(ctx, b.Pool, tok.PublicID, "admin@example.com")
		require.NoError(t, err)
		code, e := get(secret)
		require.Equal(t, http.StatusUnauthorized, code)
		require.Contains(t, e.Error.Message, "revoked")
		_, err = account.RevokeToken(ctx, b.Pool, tok.PublicID, "admin@example.com")
		require.ErrorIs(t, err, account.ErrAlreadyRevoked)
	})

	t.Run("Unknown", func(t *testing.T) {
		for _, secret := range []string{"cs_00000000_" + strings.Repeat("0", 64), "nope"} {
			code, e := get(secret)
			require.Equal(t, http.StatusUnauthorized, code)
			require.Contains(t, e.Error.Message, "unknown")
		}
	})

	t.Run("BadParams", func(t *testing.T) {
		for name, p := range map[string]account.TokenParams{
			"NoScope":      {Email: "ann@example.com", Name: "x"},
			"UnknownScope": {Email: "ann@example.com", Name: "x", Scopes: []string{"admin"}},
			"NoName":       {Email: "ann@example.com", Name: " ", Scopes: []string{"decide"}},
			"Negative":     {Email: "ann@example.com", Name: "x", Scopes: []string{"decide"}, ExpiresIn: -time.Hour},
		} {
			_, _, err := account.CreateToken(ctx, b.Pool, p)
			require.ErrorIs(t, err, account.ErrInvalid, name)
		}
		_, _, err := account.CreateToken(ctx, b.Pool, account.TokenParams{Email: "nobody@example.com", Name: "x", Scopes: []string{"decide"}})
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("DisabledUser", func(t *testing.T) {
		_, secret := mk(0)
		require.NoError(t, account.SetDisabled(ctx, b.Pool, "ann@example.com", true, "setup"))
		t.Cleanup(func() { _ = account.SetDisabled(ctx, b.Pool, "ann@example.com", false, "setup") })
		code, e := get(secret)
		require.Equal(t, http.StatusUnauthorized, code)
		require.Contains(t, e.Error.Message, "disabled")
	})
}

func TestAdminTokens(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	count := func() int {
		tokens, err := account.ListTokens(ctx, c.Pool, "")
		require.NoError(t, err)
		return len(tokens)
	}

	t.Run("NotForOthers", func(t *testing.T) {
		for _, email := range []string{"viewer@example.com", "reviewer@example.com", "approver@example.com"} {
			hc := c.client(t, email)
			_, code := c.get(t, hc, "/admin/tokens")
			require.Equal(t, http.StatusForbidden, code, email)
			resp, _ := c.post(t, hc, "/", "/admin/tokens", url.Values{"email": {email}, "name": {"mine"},
				"scope": {"decide"}, "expires": {"720h"}})
			require.Equal(t, http.StatusForbidden, resp.StatusCode, email)
			doc, _ := c.get(t, hc, "/")
			require.Zero(t, doc.Find(`[data-testid=nav-tokens]`).Length(), "no link to a page they may not see")
		}
		require.Zero(t, count(), "nothing was made")
	})

	admin := c.client(t, "admin@example.com")
	doc, code := c.get(t, admin, "/")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 1, doc.Find(`a[data-testid=nav-tokens][href="/admin/tokens"]`).Length())

	t.Run("BadForm", func(t *testing.T) {
		for name, form := range map[string]url.Values{
			"NoScope":   {"email": {"reviewer@example.com"}, "name": {"bot"}, "expires": {"720h"}},
			"BadScope":  {"email": {"reviewer@example.com"}, "name": {"bot"}, "scope": {"root"}, "expires": {"720h"}},
			"BadExpiry": {"email": {"reviewer@example.com"}, "name": {"bot"}, "scope": {"decide"}, "expires": {"soon"}},
			"NoUser":    {"email": {"nobody@example.com"}, "name": {"bot"}, "scope": {"decide"}, "expires": {"720h"}},
		} {
			resp, body := c.post(t, admin, "/admin/tokens", "/admin/tokens", form)
			require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, name)
			require.Contains(t, body, `data-testid="error"`, name)
			require.NotContains(t, body, `data-testid="token-secret"`, name)
		}
		require.Zero(t, count(), "nothing was made")
	})

	var id, secret string
	t.Run("CreateShowsTheSecretOnce", func(t *testing.T) {
		resp, body := c.post(t, admin, "/admin/tokens", "/admin/tokens", url.Values{"email": {"approver@example.com"},
			"name": {"triage-bot"}, "scope": {"requests:read", "decide"}, "expires": {"720h"}})
		require.Equal(t, http.StatusCreated, resp.StatusCode, body)
		require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
		m := regexp.MustCompile(`data-testid="token-secret">(cs_([0-9a-f]{8})_[0-9a-f]{64})<`).FindStringSubmatch(body)
		require.NotNil(t, m, body)
		secret, id = m[1], "cs_"+m[2]
		cb := regexp.MustCompile(`data-testid="token-callback-secret">([0-9a-f]{64})<`).FindStringSubmatch(body)
		require.NotNil(t, cb, "the callback secret is shown with the token")
		callbackSecret := cb[1]
		defer func() {
			doc, _ := c.get(t, admin, "/admin/tokens")
			html, _ := doc.Html()
			require.NotContains(t, html, callbackSecret, "the callback secret is never shown again")
		}()

		code, _ := call(t, c.Addr, secret, "GET", "/requests", nil)
		require.Equal(t, 200, code, "the secret works")
		code, e := call(t, c.Addr, secret, "POST", "/runs", map[string]any{"workflow": "support_triage", "business_key": "x"})
		require.Equal(t, 403, code, "within its scopes only")
		require.Contains(t, e.Error.Message, "runs:write")

		doc, code := c.get(t, admin, "/admin/tokens")
		require.Equal(t, http.StatusOK, code)
		html, _ := doc.Html()
		require.NotContains(t, html, secret[len(id):], "the secret is never shown again")
		row := doc.Find(`[data-testid="token-` + id + `"]`)
		require.Equal(t, 1, row.Length())
		require.Contains(t, row.Text(), "approver@example.com")
		require.Contains(t, row.Text(), "requests:read decide")
		require.Contains(t, row.Find(`[data-testid=token-state]`).Text(), "active")
	})

	t.Run("AnAgentsToken", func(t *testing.T) {
		doc, _ := c.get(t, admin, "/admin/tokens")
		require.Equal(t, 1, doc.Find(`[data-testid="scope-approvals:write"]`).Length(), "the form offers approvals:write")
		resp, body := c.post(t, admin, "/admin/tokens", "/admin/tokens", url.Values{"email": {"reviewer@example.com"},
			"name": {"agent"}, "scope": {"approvals:write"}, "expires": {"720h"}})
		require.Equal(t, http.StatusCreated, resp.StatusCode, body)
		m := regexp.MustCompile(`data-testid="token-secret">(cs_[0-9a-f]{8}_[0-9a-f]{64})<`).FindStringSubmatch(body)
		require.NotNil(t, m, body)
		code, _ := call(t, c.Addr, m[1], "POST", "/approvals", map[string]any{"idempotency_key": "admin-made",
			"action": map[string]any{"kind": "search", "summary": "Look up"}})
		require.Equal(t, 200, code)
	})

	t.Run("Revoke", func(t *testing.T) {
		require.NotEmpty(t, id)
		resp, _ := c.post(t, admin, "/admin/tokens", "/admin/tokens/"+id+"/revoke", url.Values{})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "/admin/tokens?revoked="+id, resp.Header.Get("Location"))
		code, e := call(t, c.Addr, secret, "GET", "/requests", nil)
		require.Equal(t, http.StatusUnauthorized, code, "revoked at once")
		require.Contains(t, e.Error.Message, "revoked")

		doc, _ := c.get(t, admin, "/admin/tokens?revoked="+id)
		require.Contains(t, doc.Find(`[data-testid=flash]`).Text(), id)
		state := doc.Find(`[data-testid="token-` + id + `"] [data-testid=token-state]`).Text()
		require.Contains(t, state, "revoked")
		require.Contains(t, state, "admin@example.com")
		require.Zero(t, doc.Find(`[data-testid="token-`+id+`"] [data-testid=revoke]`).Length())

		resp, _ = c.post(t, admin, "/admin/tokens", "/admin/tokens/"+id+"/revoke", url.Values{})
		require.Equal(t, http.StatusConflict, resp.StatusCode)
		resp, _ = c.post(t, admin, "/admin/tokens", "/admin/tokens/cs_zz/revoke", url.Values{})
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		resp, _ = c.post(t, admin, "/admin/tokens", "/admin/tokens/cs_00000000/revoke", url.Values{})
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
		doc, _ = c.get(t, admin, "/admin/tokens?revoked=<b>pwned</b>")
		require.Zero(t, doc.Find(`[data-testid=flash]`).Length(), "only a listed handle is echoed")
	})

	t.Run("Audited", func(t *testing.T) {
		for kind, actor := range map[string]string{"token.created": "admin@example.com", "token.revoked": "admin@example.com"} {
			var n int
			require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE kind = $1 AND actor = $2
				AND details->>'token_id' = $3`, kind, actor, id).Scan(&n))
			require.Equal(t, 1, n, kind)
		}
	})
}
