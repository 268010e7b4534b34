package web_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ask"
)

// TestApprovalsAPI files actions through POST /api/v1/approvals as an agent
// with only the approvals:write scope and follows them to their outcome.
func TestApprovalsAPI(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	agent := c.apiScoped(t, "reviewer@example.com", account.ScopeApprovalsWrite)
	approver := c.api(t, "approver@example.com")

	t.Run("AutoAnswersAtOnce", func(t *testing.T) {
		var a ask.Approval
		start := time.Now()
		require.Equal(t, 200, agent.do("POST", "/approvals", map[string]any{"idempotency_key": "auto-1",
			"action": map[string]any{"kind": "search", "summary": "Look up order 1042", "params": map[string]any{"q": "1042"}}}, &a))
		t.Logf("auto approval answered in %s", time.Since(start))
		require.Equal(t, ask.StatusApproved, a.Status)
		require.Equal(t, "read-only", a.Rule)
		require.Equal(t, "auto", a.Tier)
		require.NotNil(t, a.Outcome)
		require.Equal(t, map[string]any{"q": "1042"}, a.Outcome.Params)
	})

	t.Run("ExplicitThenApproved", func(t *testing.T) {
		var a ask.Approval
		require.Equal(t, 202, agent.do("POST", "/approvals", map[string]any{"idempotency_key": "email-1",
			"action": map[string]any{"kind": "email.send", "summary": "Email Ada", "params": map[string]any{"to": "ada@example.com"}},
			"context": map[string]any{"agent": "support-bot", "tool_call_id": "call_1"}}, &a))
		require.Equal(t, ask.StatusPending, a.Status)
		require.Equal(t, "explicit", a.Tier)
		require.NotEmpty(t, a.RequestID)
		require.Contains(t, a.ReviewURL, "/requests/"+a.RequestID)

		var req struct {
			PayloadHash string `json:"payload_hash"`
		}
		require.Equal(t, 200, approver.do("GET", "/requests/"+a.RequestID, nil, &req))
		done := make(chan ask.Approval, 1)
		go func() {
			var got ask.Approval
			agent.do("GET", "/approvals/"+a.ID+"?wait=30s", nil, &got)
			done <- got
		}()
		time.Sleep(200 * time.Millisecond)
		require.Equal(t, 200, approver.do("POST", "/requests/"+a.RequestID+"/decision",
			map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash}, nil))
		select {
		case got := <-done:
			require.Equal(t, ask.StatusApproved, got.Status)
			require.Equal(t, "approver@example.com", got.Outcome.DecidedBy)
			require.Equal(t, map[string]any{"to": "ada@example.com"}, got.Outcome.Params)
		case <-time.After(10 * time.Second):
			t.Fatal("the long poll did not return after the decision")
		}
	})
}
