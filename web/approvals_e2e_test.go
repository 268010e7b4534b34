package web_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/testapp"
)

// TestBrowserAgentApprovalEndToEnd is the approvals API as an agent in any
// language lives it: it files an action with its token, a reviewer approves it
// in the console in a real browser, the agent's long poll returns the
// outcome, its callback receiver gets one POST signed with the token's
// callback secret, and the receipt in both verifies against the server's
// published keys.
func TestBrowserAgentApprovalEndToEnd(t *testing.T) {
	t.Parallel()
	c := startConsoleWith(t, testapp.Options{CallbackAllow: "127.0.0.0/8"})
	ctx := context.Background()
	_, err := account.Create(ctx, c.Pool, "agent@example.com", "Agent", "reviewer", password, "setup")
	require.NoError(t, err)
	tok, secret, err := account.CreateToken(ctx, c.Pool, account.TokenParams{Email: "agent@example.com", Name: "support bot",
		Scopes: []string{account.ScopeApprovalsWrite}, By: "setup"})
	require.NoError(t, err)
	agent := &apiClient{t: t, base: c.Addr + "/api/v1", token: secret}

	type delivery struct {
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	var got []delivery
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, delivery{r.Header.Clone(), body})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)

	var filed ask.Approval
	require.Equal(t, 202, agent.do("POST", "/approvals", map[string]any{
		"idempotency_key": "call_42",
		"action": map[string]any{"kind": "email.send", "target": "ada@example.com", "summary": "Email Ada about her refund",
			"params": map[string]any{"to": "ada@example.com", "subject": "Your refund"}, "risk": "low", "reversible": false},
		"callback_url": receiver.URL + "/hooks/countersign",
		"context":      map[string]any{"agent": "support-bot", "tool_call_id": "call_42"},
	}, &filed))
	require.Equal(t, ask.StatusPending, filed.Status)

	polled := make(chan ask.Approval, 1)
	go func() {
		var a ask.Approval
		agent.do("GET", "/approvals/"+filed.ID+"?wait=60s", nil, &a)
		polled <- a
	}()

	b := browser(t)
	c.signIn(b, t, "reviewer@example.com")
	review, err := url.Parse(filed.ReviewURL)
	require.NoError(t, err)
	require.NoError(t, chromedp.Run(b, chromedp.Navigate(c.Addr+review.Path),
		chromedp.WaitVisible(`[data-testid=review]`, chromedp.ByQuery)))
	require.Contains(t, text(b, t, `[data-testid=summary]`), "Email Ada about her refund")
	require.Contains(t, text(b, t, `[data-testid=agent-context]`), "support-bot")
	// Not reversible: the button asks nothing more, the key would.
	require.NoError(t, chromedp.Run(b, clickOn(`[data-testid=approve]`),
		chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))

	var outcome ask.Approval
	select {
	case outcome = <-polled:
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll did not return after the reviewer approved")
	}
	require.Equal(t, ask.StatusApproved, outcome.Status)
	require.Equal(t, "reviewer@example.com", outcome.Outcome.DecidedBy)
	require.Equal(t, map[string]any{"to": "ada@example.com", "subject": "Your refund"}, outcome.Outcome.Params)

	var keys struct {
		Keys []receipt.PublicKey `json:"keys"`
	}
	res, err := http.Get(c.Addr + "/.well-known/countersign/receipt-keys")
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(res.Body).Decode(&keys))
	res.Body.Close()
	require.NotNil(t, outcome.Receipt)
	claims, err := receipt.Verify(*outcome.Receipt, keys.Keys)
	require.NoError(t, err, "the receipt verifies offline with the published key")
	require.Equal(t, "approve", claims.Verdict)
	require.Equal(t, filed.RequestID, claims.RequestID)
	require.Equal(t, outcome.Outcome.Params, claims.Params, "the receipt names exactly the parameters to execute")

	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) > 0 }, 30*time.Second, 50*time.Millisecond,
		"the callback is delivered")
	time.Sleep(300 * time.Millisecond) // a second POST would be a duplicate
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 1, "one delivery")
	d := got[0]
	require.Equal(t, "approval.decided", d.header.Get("Countersign-Event"))
	sig := d.header.Get("Countersign-Signature")
	ts, _, ok := strings.Cut(strings.TrimPrefix(sig, "t="), ",")
	require.True(t, ok, sig)
	unix, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err)
	require.Equal(t, callback.Sign(tok.CallbackSecret, time.Unix(unix, 0), d.body), sig,
		"signed with the secret shown once with the token")
	var body ask.Approval
	require.NoError(t, json.Unmarshal(d.body, &body))
	require.Equal(t, filed.ID, body.ID)
	require.Equal(t, ask.StatusApproved, body.Status)
	_, err = receipt.Verify(*body.Receipt, keys.Keys)
	require.NoError(t, err, "the callback's receipt verifies too")
}
