package testapp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/policy"
)

// Agents is a web process set up for the approvals API's clients (MCP,
// `countersign ask`, the example clients, hooks): the example policy, an
// agent user whose token files approvals, and an approver who decides them
// through the API as a reviewer would.
type Agents struct {
	*Bundle
	AgentToken    string // agent@example.com, scope approvals:write
	ApproverToken string // approver@example.com, scopes decide and requests:read
	ReadOnlyToken string // agent@example.com, scope runs:read only
}

// StartAgents runs a process with the web side and the users and tokens of
// Agents. In the example policy, kind "read" is approved at once (rule
// read-only) and kind "email.send" waits for a reviewer (rule outbound-email).
func StartAgents(t testing.TB) *Agents {
	t.Helper()
	b := Start(t, Options{Web: true})
	ctx := context.Background()
	_, err := policystore.Apply(ctx, b.Pool, policy.Example, "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	a := &Agents{Bundle: b}
	for email, role := range map[string]string{"agent@example.com": "reviewer", "approver@example.com": "approver"} {
		_, err := account.Create(ctx, b.Pool, email, email, role, "correct-horse-battery", "setup")
		require.NoError(t, err)
	}
	token := func(email string, scopes ...string) string {
		_, secret, err := account.CreateToken(ctx, b.Pool, account.TokenParams{Email: email, Name: "test", Scopes: scopes, By: "setup"})
		require.NoError(t, err)
		return secret
	}
	a.AgentToken = token("agent@example.com", account.ScopeApprovalsWrite)
	a.ApproverToken = token("approver@example.com", account.ScopeDecide, account.ScopeRequestsRead)
	a.ReadOnlyToken = token("agent@example.com", account.ScopeRunsRead)
	return a
}

// PendingRequest is one pending approval request as the API lists it.
type PendingRequest struct {
	ID          string          `json:"id"`
	Summary     string          `json:"summary"`
	PayloadHash string          `json:"payload_hash"`
	Action      json.RawMessage `json:"action"`
}

// WaitPending waits until exactly one request is pending and returns it.
func (a *Agents) WaitPending(t testing.TB) PendingRequest {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var page struct {
			Requests []PendingRequest `json:"requests"`
		}
		status, body := a.API(t, a.ApproverToken, http.MethodGet, "/api/v1/requests?status=pending", nil)
		require.Equal(t, http.StatusOK, status, body)
		require.NoError(t, json.Unmarshal([]byte(body), &page))
		if len(page.Requests) == 1 {
			return page.Requests[0]
		}
		require.Less(t, len(page.Requests), 2, "one request at a time: %s", body)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no request became pending within 30s")
	return PendingRequest{}
}

// Decide decides a request as approver@example.com through the API: verdict
// approve, reject, edit (with edited params) or request_changes.
func (a *Agents) Decide(t testing.TB, r PendingRequest, verdict, reason string, edited map[string]any) {
	t.Helper()
	body := map[string]any{"verdict": verdict, "reason": reason, "payload_hash": r.PayloadHash}
	if edited != nil {
		body["edited_params"] = edited
	}
	status, answer := a.API(t, a.ApproverToken, http.MethodPost, "/api/v1/requests/"+r.ID+"/decision", body)
	require.Equal(t, http.StatusOK, status, answer)
}

// API calls the server with a bearer token and returns the status and body.
func (a *Agents) API(t testing.TB, token, method, path string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.Addr+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, fmt.Sprintf("%s %s", method, path))
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(raw)
}
