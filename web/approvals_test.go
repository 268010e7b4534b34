package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/web"
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
			"action":  map[string]any{"kind": "email.send", "summary": "Email Ada", "params": map[string]any{"to": "ada@example.com"}},
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

	t.Run("InTheInboxWithTheAgentsContext", func(t *testing.T) {
		var first ask.Approval
		require.Equal(t, 202, agent.do("POST", "/approvals", map[string]any{"idempotency_key": "email-2",
			"action":  map[string]any{"kind": "email.send", "summary": "Email Bob <b>now</b>", "params": map[string]any{"to": "bob@example.com"}},
			"context": map[string]any{"agent": "<script>x</script>", "tool_call_id": "call_2"}}, &first))
		var page struct {
			Requests []struct{ ID string } `json:"requests"`
		}
		require.Equal(t, 200, approver.do("GET", "/requests?status=pending", nil, &page))
		var ids []string
		for _, r := range page.Requests {
			ids = append(ids, r.ID)
		}
		require.Contains(t, ids, first.RequestID, "the request is in the inbox like a workflow's")

		var req struct {
			PayloadHash string `json:"payload_hash"`
		}
		require.Equal(t, 200, approver.do("GET", "/requests/"+first.RequestID, nil, &req))
		require.Equal(t, 200, approver.do("POST", "/requests/"+first.RequestID+"/decision",
			map[string]any{"verdict": "request_changes", "reason": "say which order", "payload_hash": req.PayloadHash}, nil))
		var changed ask.Approval
		require.Equal(t, 200, agent.do("GET", "/approvals/"+first.ID+"?wait=5", nil, &changed))
		require.Equal(t, ask.StatusChangesRequested, changed.Status)
		require.Equal(t, "say which order", changed.Outcome.Reason)

		var second ask.Approval
		require.Equal(t, 202, agent.do("POST", "/approvals", map[string]any{"idempotency_key": "email-3", "revises": first.ID,
			"action":  map[string]any{"kind": "email.send", "summary": "Email Bob about order 1042", "params": map[string]any{"to": "bob@example.com"}},
			"context": map[string]any{"agent": "support-bot"}}, &second))
		require.Equal(t, first.ID, second.Revises)
		require.Equal(t, 1, second.Revision)

		hc := c.client(t, "approver@example.com")
		doc, code := c.get(t, hc, "/requests/"+second.RequestID)
		require.Equal(t, 200, code)
		require.Contains(t, doc.Find(`[data-testid="agent-context"]`).Text(), "support-bot")
		revs := doc.Find(`[data-testid="revision"]`)
		require.Equal(t, 1, revs.Length())
		require.Contains(t, revs.Text(), "Email Bob <b>now</b>", "the earlier summary, as text")
		require.Contains(t, revs.Find(`[data-testid="feedback"]`).Text(), "say which order")

		doc, _ = c.get(t, hc, "/requests/"+first.RequestID)
		html, err := doc.Find(`[data-testid="agent-context"]`).Html()
		require.NoError(t, err)
		require.NotContains(t, html, "<script>", "the agent's context is escaped")
	})

	t.Run("SameKey", func(t *testing.T) {
		body := map[string]any{"idempotency_key": "same-1", "action": map[string]any{"kind": "search", "summary": "Look up 7"}}
		var a, b ask.Approval
		require.Equal(t, 200, agent.do("POST", "/approvals", body, &a))
		require.Equal(t, 200, agent.do("POST", "/approvals", body, &b))
		require.Equal(t, a.ID, b.ID)
		body["action"] = map[string]any{"kind": "search", "summary": "Look up 8"}
		var e apiErr
		require.Equal(t, 409, agent.do("POST", "/approvals", body, &e))
		require.Equal(t, "idempotency_conflict", e.Error.Code)
	})

	t.Run("Refused", func(t *testing.T) {
		action := map[string]any{"kind": "search", "summary": "Look up 9"}
		for _, tc := range []struct {
			name string
			body any
			code int
			msg  string
		}{
			{"NoKey", map[string]any{"action": action}, 400, "idempotency_key"},
			{"NoAction", map[string]any{"idempotency_key": "r-1"}, 400, "action is required"},
			{"UnknownField", map[string]any{"idempotency_key": "r-2", "action": action, "colour": 1}, 400, "unknown field"},
			{"UnknownActionField", map[string]any{"idempotency_key": "r-3", "action": map[string]any{"kind": "a", "summary": "b", "colour": 1}}, 400, "unknown field"},
			{"PrivateCallback", map[string]any{"idempotency_key": "r-4", "action": action, "callback_url": "http://10.0.0.1/hook"}, 400, "not a public address"},
			{"ContextTooLarge", map[string]any{"idempotency_key": "r-5", "action": action, "context": map[string]any{"x": strings.Repeat("a", ask.MaxContext)}}, 413, "context"},
			{"RevisesUnknown", map[string]any{"idempotency_key": "r-6", "action": action, "revises": "00000000-0000-0000-0000-000000000000"}, 422, "revises"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var e apiErr
				require.Equal(t, tc.code, agent.do("POST", "/approvals", tc.body, &e))
				require.Contains(t, e.Error.Message, tc.msg)
			})
		}

		t.Run("Viewer", func(t *testing.T) {
			var e apiErr
			viewer := c.apiScoped(t, "viewer@example.com", account.ScopeApprovalsWrite)
			require.Equal(t, 403, viewer.do("POST", "/approvals", map[string]any{"idempotency_key": "v-1", "action": action}, &e))
			runs, err := store.RunList(context.Background(), c.Pool, store.RunListParams{Workflow: ask.Workflow, BusinessKey: "", Limit: 500})
			require.NoError(t, err)
			for _, r := range runs {
				require.NotEqual(t, "viewer@example.com", r.StartedBy, "the refused viewer started nothing")
			}
			events, err := store.AuditList(context.Background(), c.Pool, store.AuditFilter{Actor: "viewer@example.com"}, 0, 100)
			require.NoError(t, err)
			require.Empty(t, events, "and left no audit event")
		})

		t.Run("NotThroughRuns", func(t *testing.T) {
			var e apiErr
			require.Equal(t, 422, approver.do("POST", "/runs", map[string]any{"workflow": ask.Workflow, "business_key": "forged",
				"input": map[string]any{"action": action, "idempotency_key": "k", "user_id": 1, "body_hash": "x"}}, &e))
			require.Contains(t, e.Error.Message, "POST /api/v1/approvals")
		})

		t.Run("CannotDecide", func(t *testing.T) {
			var a ask.Approval
			require.Equal(t, 202, agent.do("POST", "/approvals", map[string]any{"idempotency_key": "d-1",
				"action": map[string]any{"kind": "email.send", "summary": "Email Cy"}}, &a))
			var e apiErr
			require.Equal(t, 403, agent.do("POST", "/requests/"+a.RequestID+"/decision", map[string]any{"verdict": "approve", "payload_hash": "x"}, &e))
			require.Contains(t, e.Error.Message, "decide")
			require.Equal(t, 403, agent.do("GET", "/requests/"+a.RequestID, nil, &e), "nor read the inbox")
		})

		t.Run("Wait", func(t *testing.T) {
			var a ask.Approval
			require.Equal(t, 200, agent.do("POST", "/approvals", map[string]any{"idempotency_key": "w-1", "action": action}, &a))
			var e apiErr
			require.Equal(t, 400, agent.do("GET", "/approvals/"+a.ID+"?wait=soon", nil, &e))
			require.Equal(t, 400, agent.do("GET", "/approvals/"+a.ID+"?wait=-1s", nil, &e))
			require.Equal(t, 200, agent.do("GET", "/approvals/"+a.ID+"?wait=10m", nil, nil), "a decided approval answers at once")
			require.Equal(t, 404, agent.do("GET", "/approvals/00000000-0000-0000-0000-000000000000", nil, &e))
			require.Equal(t, 404, agent.do("GET", "/approvals/nope", nil, &e))
			other := c.apiScoped(t, "approver@example.com", account.ScopeApprovalsWrite)
			require.Equal(t, 404, other.do("GET", "/approvals/"+a.ID, nil, &e), "another user's approval is not found")
			for in, want := range map[string]time.Duration{"": 0, "30s": 30 * time.Second, "5": 5 * time.Second, "10m": time.Minute} {
				got, err := web.ParseWait(in)
				require.NoError(t, err)
				require.Equal(t, want, got, in)
			}
		})
	})

	t.Run("FromTheConsole", func(t *testing.T) {
		hc := c.client(t, "reviewer@example.com")
		post := func(csrf string) *http.Response {
			raw, _ := json.Marshal(map[string]any{"idempotency_key": "console-1",
				"action": map[string]any{"kind": "search", "summary": "Look up 11"}})
			req, err := http.NewRequest("POST", c.Addr+"/api/v1/approvals", bytes.NewReader(raw))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-CSRF-Token", csrf)
			resp, err := hc.Do(req)
			require.NoError(t, err)
			t.Cleanup(func() { resp.Body.Close() })
			return resp
		}
		require.Equal(t, 403, post("forged").StatusCode, "a session's call needs its CSRF token")
		resp := post(c.csrf(t, hc, "/"))
		require.Equal(t, 200, resp.StatusCode)
		var a ask.Approval
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
		require.Equal(t, ask.StatusApproved, a.Status)
		r, err := hc.Get(c.Addr + "/api/v1/approvals/" + a.ID)
		require.NoError(t, err)
		r.Body.Close()
		require.Equal(t, 200, r.StatusCode)
		r, err = http.Get(c.Addr + "/api/v1/approvals/" + a.ID)
		require.NoError(t, err)
		r.Body.Close()
		require.Equal(t, 401, r.StatusCode, "neither a token nor a session")
	})

	t.Run("IdempotencyKeyHeader", func(t *testing.T) {
		raw, _ := json.Marshal(map[string]any{"action": map[string]any{"kind": "search", "summary": "Look up 10"}})
		req, err := http.NewRequest("POST", agent.base+"/approvals", bytes.NewReader(raw))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+agent.token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "hdr-1")
		resp, err := contractClient(t).Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var a ask.Approval
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&a))
		require.Equal(t, 200, resp.StatusCode)
		require.Equal(t, "hdr-1", a.IdempotencyKey)
	})
}

// TestApprovalsExactNumbers: an integer param beyond 2^53 keeps its digits
// from intake to the outcome, the receipt and the request.
func TestApprovalsExactNumbers(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	agent := c.apiScoped(t, "reviewer@example.com", account.ScopeApprovalsWrite)
	approver := c.api(t, "approver@example.com")
	type params map[string]json.RawMessage
	var a struct {
		RequestID string                                   `json:"request_id"`
		Action    struct{ Params params }                  `json:"action"`
		Outcome   struct{ Params params }                  `json:"outcome"`
		Receipt   struct{ Claims struct{ Params params } } `json:"receipt"`
	}
	require.Equal(t, 200, agent.do("POST", "/approvals", `{"idempotency_key":"big-1","action":{"kind":"search","summary":"Look up account",`+
		`"params":{"account":12345678901234567891,"n":9007199254740993,"nested":{"id":98765432109876543210}}}}`, &a))
	for name, p := range map[string]params{"action": a.Action.Params, "outcome": a.Outcome.Params, "receipt": a.Receipt.Claims.Params} {
		require.Equal(t, "12345678901234567891", string(p["account"]), name)
		require.Equal(t, "9007199254740993", string(p["n"]), name)
		require.JSONEq(t, `{"id":98765432109876543210}`, string(p["nested"]), name)
	}
	var req struct {
		Action struct{ Params params } `json:"action"`
	}
	require.Equal(t, 200, approver.do("GET", "/requests/"+a.RequestID, nil, &req))
	require.Equal(t, "12345678901234567891", string(req.Action.Params["account"]))

	t.Run("PolicyStillComparesNumbers", func(t *testing.T) {
		// The example policy's refund rule compares params.amount.
		var r ask.Approval
		require.Equal(t, 202, agent.do("POST", "/approvals", `{"idempotency_key":"refund-big","action":{"kind":"payment.refund","summary":"Refund",`+
			`"params":{"amount":10000000000000000001}}}`, &r))
		require.Equal(t, ask.StatusPending, r.Status)
	})
}
