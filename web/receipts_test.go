package web_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

func TestReceiptKeys(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	for _, path := range []string{"/api/v1/receipts/keys", "/.well-known/countersign/receipt-keys"} {
		t.Run(path, func(t *testing.T) {
			// No token: anyone holding a receipt may check it.
			resp, err := contractClient(t).Get(c.Addr + path)
			require.NoError(t, err)
			t.Cleanup(func() { resp.Body.Close() })
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(raw))
			require.Equal(t, "public, max-age=300", resp.Header.Get("Cache-Control"))
			// The contract client checks /api/ only; the well-known path is
			// held to the same spec here.
			require.NoError(t, checkAnswer(resp.Request, resp, raw))
			var keys receipt.KeySet
			require.NoError(t, json.Unmarshal(raw, &keys))
			require.Len(t, keys.Keys, 1)
			require.Equal(t, "Ed25519", keys.Keys[0].Algorithm)
			require.NotContains(t, string(raw), "private")
		})
	}
}

func TestRequestReceipt(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	ticket := demo.Ticket{ID: "T-9", Customer: "ada@example.com", Subject: "Refund", Body: "broken", OrderTotal: 900}
	_, req := c.startRun(t, "support_triage", "T-9", ticket, "someone@example.com")
	reader := c.apiScoped(t, "viewer@example.com", account.ScopeRequestsRead)
	get := func(t *testing.T) (int, []byte) {
		t.Helper()
		hreq, err := http.NewRequest(http.MethodGet, c.Addr+"/api/v1/requests/"+req.ID+"/receipt", nil)
		require.NoError(t, err)
		hreq.Header.Set("Authorization", "Bearer "+reader.token)
		resp, err := contractClient(t).Do(hreq)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, raw
	}

	t.Run("Undecided", func(t *testing.T) {
		code, raw := get(t)
		require.Equal(t, http.StatusNotFound, code)
		require.Contains(t, string(raw), "not decided yet")
	})

	approve := func(t *testing.T, email string) *workflow.DecideResult {
		t.Helper()
		res, err := c.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: workflow.Actor{Name: email,
			Roles: []vocab.Role{vocab.RoleApprover}}, Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		return res
	}

	t.Run("PartlyApproved", func(t *testing.T) {
		require.Equal(t, 2, req.ApprovalsRequired, "the example policy's large refunds need two approvers")
		require.Nil(t, approve(t, "approver@example.com").Decision)
		code, raw := get(t)
		require.Equal(t, http.StatusNotFound, code)
		require.Contains(t, string(raw), "not decided yet")
	})

	t.Run("Decided", func(t *testing.T) {
		require.NotNil(t, approve(t, "approver2@example.com").Decision)
		code, raw := get(t)
		require.Equal(t, http.StatusOK, code, string(raw))
		var r struct {
			receipt.Receipt
			Claims json.RawMessage `json:"claims"`
		}
		require.NoError(t, json.Unmarshal(raw, &r))
		keys, err := c.App.Receipts.Keys(ctx)
		require.NoError(t, err)
		claims, err := receipt.Verify(r.Receipt, keys)
		require.NoError(t, err)
		require.Equal(t, req.ID, claims.RequestID)
		require.Equal(t, "approve", claims.Verdict)
		require.Equal(t, req.PayloadHash, claims.PayloadHash)
		payload, err := base64.RawURLEncoding.DecodeString(r.Payload)
		require.NoError(t, err)
		require.JSONEq(t, string(payload), string(r.Claims), "the claims shown are the signed bytes")
	})
}

// TestRequestReceiptOfApproval: the request of an approval filed through the
// approvals API has one receipt, whichever route asks for it.
func TestRequestReceiptOfApproval(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	agent := c.apiScoped(t, "reviewer@example.com", account.ScopeApprovalsWrite)
	reader := c.apiScoped(t, "viewer@example.com", account.ScopeRequestsRead)
	var a ask.Approval
	require.Equal(t, 200, agent.do("POST", "/approvals", map[string]any{"idempotency_key": "rcpt-1",
		"action": map[string]any{"kind": "search", "summary": "Look up order 1042", "params": map[string]any{"q": "1042"}}}, &a))
	require.NotNil(t, a.Receipt)
	require.Equal(t, a.ID, a.Receipt.Claims.ApprovalID)
	var r receipt.Receipt
	require.Equal(t, 200, reader.do("GET", "/requests/"+a.RequestID+"/receipt", nil, &r))
	require.Equal(t, a.ID, r.Claims.ApprovalID, "the request's receipt names its approval")
	require.Equal(t, a.Receipt.Payload, r.Payload, "both routes sign the same claims")
	require.Equal(t, a.Receipt.Signature, r.Signature)
}
