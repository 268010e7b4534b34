package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

type apiClient struct {
	t     *testing.T
	base  string
	token string
}

// api returns a client with a token of every scope, so that what it may do
// is its user's role.
func (c *console) api(t *testing.T, email string) *apiClient {
	t.Helper()
	return c.apiScoped(t, email, account.ScopeNames()...)
}

// apiScoped returns a client with a token of the given scopes.
func (c *console) apiScoped(t *testing.T, email string, scopes ...string) *apiClient {
	t.Helper()
	_, secret, err := account.CreateToken(context.Background(), c.Pool, account.TokenParams{
		Email: email, Name: "test", Scopes: scopes, By: "setup"})
	require.NoError(t, err)
	return &apiClient{t: t, base: c.Addr + "/api/v1", token: secret}
}

// do sends a request and decodes the JSON answer into out (if not nil).
func (a *apiClient) do(method, path string, body any, out any) int {
	a.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = bytes.NewBufferString(b)
	default:
		raw, _ := json.Marshal(b)
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.base+path, r)
	require.NoError(a.t, err)
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := contractClient(a.t).Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	require.Contains(a.t, resp.Header.Get("Content-Type"), "application/json", string(raw))
	if out != nil {
		require.NoError(a.t, json.Unmarshal(raw, out), string(raw))
	}
	return resp.StatusCode
}

type apiErr struct {
	Error struct{ Code, Message string } `json:"error"`
}

func TestAPI(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	agent := c.api(t, "reviewer@example.com")
	ticket := demo.Ticket{ID: "T-9", Customer: "ada@example.com", Subject: "Refund", Body: "broken", OrderTotal: 900}

	t.Run("NeedsAToken", func(t *testing.T) {
		var e apiErr
		require.Equal(t, 401, (&apiClient{t: t, base: agent.base}).do("GET", "/runs", nil, &e))
		require.Contains(t, e.Error.Message, "Bearer")
		require.Equal(t, 401, (&apiClient{t: t, base: agent.base, token: "cs_nope"}).do("GET", "/runs", nil, &e))
	})

	var run store.Run
	require.Equal(t, 201, agent.do("POST", "/runs", map[string]any{"workflow": "support_triage", "business_key": "T-9", "input": ticket}, &run))
	require.Equal(t, vocab.RunQueued, run.Status)
	require.Equal(t, "reviewer@example.com", run.StartedBy)
	var again store.Run
	require.Equal(t, 200, agent.do("POST", "/runs", map[string]any{"workflow": "support_triage", "business_key": "T-9", "input": ticket}, &again))
	require.Equal(t, run.ID, again.ID)

	t.Run("BadInput", func(t *testing.T) {
		for _, tc := range []struct {
			body any
			code int
			msg  string
		}{
			{`{"workflow":`, 400, "not valid JSON"},
			{`{"workflow":"support_triage","business_key":"k","colour":1}`, 400, "unknown field"},
			{map[string]any{"workflow": "nope", "business_key": "k"}, 422, "unknown workflow"},
			{map[string]any{"workflow": "support_triage", "business_key": "k", "input": map[string]any{"bogus": 1}}, 422, "invalid input"},
			{map[string]any{"workflow": "support_triage"}, 422, "required"},
		} {
			var e apiErr
			require.Equal(t, tc.code, agent.do("POST", "/runs", tc.body, &e), "%v", tc.body)
			require.Contains(t, e.Error.Message, tc.msg)
			require.NotEmpty(t, e.Error.Code)
		}
		var e apiErr
		require.Equal(t, 403, c.api(t, "viewer@example.com").do("POST", "/runs", map[string]any{"workflow": "support_triage", "business_key": "v"}, &e))
		require.Equal(t, 400, agent.do("GET", "/runs?status=snoozing", nil, &e))
		require.Equal(t, 400, agent.do("GET", "/runs?limit=0", nil, &e))
		require.Equal(t, 400, agent.do("GET", "/runs?after=bm90LWpzb24", nil, &e))
		require.Equal(t, 404, agent.do("GET", "/runs/not-a-uuid", nil, &e))
		require.Equal(t, 404, agent.do("GET", "/requests/00000000-0000-0000-0000-000000000000", nil, &e))
	})

	c.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	var got struct {
		store.Run
		Steps []store.Step `json:"steps"`
	}
	require.Equal(t, 200, agent.do("GET", "/runs/"+run.ID, nil, &got))
	require.Equal(t, vocab.RunWaitingHuman, got.Status)
	require.Len(t, got.Steps, 4)
	var list struct {
		Runs []store.Run `json:"runs"`
	}
	require.Equal(t, 200, agent.do("GET", "/runs?status=waiting_human", nil, &list))
	require.Len(t, list.Runs, 1)

	var reqs struct {
		Requests []store.Request `json:"requests"`
	}
	require.Equal(t, 200, agent.do("GET", "/requests?status=pending&tier=explicit", nil, &reqs))
	require.Len(t, reqs.Requests, 1)
	req := reqs.Requests[0]
	require.Equal(t, "big-refund", req.Rule)
	require.Equal(t, 2, req.ApprovalsRequired)

	t.Run("Decisions", func(t *testing.T) {
		decide := func(a *apiClient, body map[string]any, out any) int {
			return a.do("POST", "/requests/"+req.ID+"/decision", body, out)
		}
		var e apiErr
		require.Equal(t, 403, decide(agent, map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash}, &e),
			"the rule needs an approver")
		require.Contains(t, e.Error.Message, "approver")
		approver, approver2 := c.api(t, "approver@example.com"), c.api(t, "approver2@example.com")
		require.Equal(t, 422, decide(approver, map[string]any{"verdict": "maybe", "payload_hash": req.PayloadHash}, &e))
		require.Equal(t, 422, decide(approver, map[string]any{"verdict": "reject", "payload_hash": req.PayloadHash}, &e))
		require.Equal(t, 422, decide(approver, map[string]any{"verdict": "edit", "payload_hash": req.PayloadHash,
			"edited_params": map[string]any{"amount": 1.0, "currency": "EUR", "customer": "ada@example.com", "reason": "Refund"}}, &e))
		require.Contains(t, e.Error.Message, "request changes instead", "an edit would change what the other approver approves")
		require.Equal(t, 409, decide(approver, map[string]any{"verdict": "approve", "payload_hash": "stale"}, &e))
		require.Equal(t, "payload_changed", e.Error.Code)

		var res struct {
			Status    string `json:"status"`
			Approvals int    `json:"approvals"`
			Required  int    `json:"approvals_required"`
		}
		require.Equal(t, 200, decide(approver, map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash}, &res))
		require.Equal(t, "awaiting_more_approvals", res.Status)
		require.Equal(t, 1, res.Approvals)
		// The same person again, from another token, is still one approver.
		require.Equal(t, 200, decide(c.api(t, "approver@example.com"), map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash}, &res))
		require.Equal(t, 1, res.Approvals)
		require.Equal(t, 200, decide(approver2, map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash}, &res))
		require.Equal(t, "decided", res.Status)
		require.Equal(t, 409, decide(approver2, map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash}, &e))
		require.Equal(t, "already_decided", e.Error.Code)
		require.Contains(t, e.Error.Message, "by approver2@example.com at")

		var detail struct {
			Votes    []string        `json:"votes"`
			Decision *store.Decision `json:"decision"`
		}
		require.Equal(t, 200, agent.do("GET", "/requests/"+req.ID, nil, &detail))
		require.ElementsMatch(t, []string{"approver@example.com", "approver2@example.com"}, detail.Votes)
		require.Equal(t, vocab.VerdictApprove, detail.Decision.Verdict)
		c.WaitRun(t, run.ID, vocab.RunCompleted)
	})

	t.Run("SelfApprovalRefused", func(t *testing.T) {
		var r store.Run
		require.Equal(t, 201, agent.do("POST", "/runs", map[string]any{"workflow": "support_triage", "business_key": "T-self",
			"input": demo.Ticket{ID: "T-self", Customer: "x@example.com", Subject: "How do I login?", Body: "password"}}, &r))
		c.WaitRun(t, r.ID, vocab.RunWaitingHuman)
		pending := c.PendingRequest(t, r.ID)
		var e apiErr
		require.Equal(t, 403, agent.do("POST", "/requests/"+pending.ID+"/decision", map[string]any{"verdict": "approve", "payload_hash": pending.PayloadHash}, &e))
		require.Contains(t, e.Error.Message, "you started this run")
	})
}

func TestReviewShowsWhoApproved(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	_, req := c.startRun(t, "support_triage", "T-2a", demo.Ticket{ID: "2a", Customer: "a@example.com", Subject: "Refund", Body: "broken", OrderTotal: 900}, "api@example.com")
	require.Equal(t, 2, req.ApprovalsRequired)
	approver := c.api(t, "approver@example.com")
	var e apiErr
	require.Equal(t, 200, approver.do("POST", "/requests/"+req.ID+"/decision", map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash}, nil))
	hc := c.client(t, "viewer@example.com")
	doc, _ := c.get(t, hc, "/requests/"+req.ID)
	require.Contains(t, doc.Find(`[data-testid=approvals]`).Text(), "1 of 2 approvals")
	require.Equal(t, 200, c.api(t, "approver2@example.com").do("POST", "/requests/"+req.ID+"/decision",
		map[string]any{"verdict": "reject", "reason": "too much", "payload_hash": req.PayloadHash}, &e))
	doc, _ = c.get(t, hc, "/requests/"+req.ID)
	require.Equal(t, "2 required; approved by approver@example.com", doc.Find(`[data-testid=approvals]`).Text(),
		"the rejecter is not counted as an approver")
}
