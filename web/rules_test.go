package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
	"github.com/countersign/countersign/web"
)

// refundsFlow registers "refunds": one refund of the input amount, and the
// verdict as its result.
func refundsFlow(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "refunds", func(ctx context.Context, amount float64) (string, error) {
		d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "payment.refund", Summary: "Refund",
			Params: map[string]any{"amount": amount}})
		return string(d.Verdict), err
	})
}

// refundHistory records what reviewers decided under the example policy's
// "refund" rule: 100 refunds of 10 to 100 approved as proposed, and one of
// 50 rejected (100/101 = 99.0 % approved).
func refundHistory(t *testing.T, c *console) {
	t.Helper()
	ctx := context.Background()
	decide := func(amount float64, v vocab.Verdict) {
		run := factory.Run(ctx, t, c.Pool, &factory.RunOpts{Workflow: factory.Ptr("refunds"), Status: factory.Ptr(vocab.RunCompleted)})
		req := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{Run: run, Rule: factory.Ptr("refund"),
			Status: factory.Ptr(v.RequestStatus()),
			Action: &workflow.Action{Kind: "payment.refund", Summary: "Refund", Params: map[string]any{"amount": amount}}})
		_, err := store.DecisionInsert(ctx, c.Pool, &store.Decision{RequestID: req.ID, RunID: run.ID, Actor: "reviewer@example.com",
			Verdict: v, PayloadHash: req.PayloadHash, PolicyVersion: 1, Rule: "refund", Tier: vocab.TierExplicit})
		require.NoError(t, err)
	}
	for i := range 100 {
		decide(float64(10+i*90/99), vocab.VerdictApprove)
	}
	decide(50, vocab.VerdictReject)
}

// reviewForm is the form that reviews the proposal for refunds.
func reviewForm(mode string, tier vocab.Tier) url.Values {
	return url.Values{"window": {"24h"}, "min": {"50"}, "rule": {"refund"}, "kind": {"payment.refund"},
		"mode": {mode}, "tier": {string(tier)}, "duration": {"24h0m0s"}}
}

// confirmForm is the activation form a review page shows.
func confirmForm(t *testing.T, body string) url.Values {
	t.Helper()
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(body))
	require.NoError(t, err)
	form := url.Values{}
	doc.Find(`[data-testid=review-form] input[type=hidden]`).Each(func(_ int, s *goquery.Selection) {
		if name := s.AttrOr("name", ""); name != "_csrf" {
			form.Set(name, s.AttrOr("value", ""))
		}
	})
	require.NotEmpty(t, form.Get("confirm"), "the review shows an activation form")
	return form
}

func countEvents(t *testing.T, c *console, kind string) int {
	t.Helper()
	var n int
	require.NoError(t, c.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audit_events WHERE kind = $1`, kind).Scan(&n))
	return n
}

func TestRuleStatsAndProposals(t *testing.T) {
	t.Parallel()
	c := startConsole(t, refundsFlow)
	refundHistory(t, c)

	t.Run("EveryoneReadsTheStatistics", func(t *testing.T) {
		for _, email := range []string{"viewer@example.com", "reviewer@example.com", "approver@example.com", "admin@example.com"} {
			doc, status := c.get(t, c.client(t, email), "/policy/rules?window=24h")
			require.Equal(t, http.StatusOK, status)
			row := doc.Find(`[data-testid="stat-refund/payment.refund"]`)
			require.Equal(t, "101", row.Find(`[data-testid=volume]`).Text())
			require.Equal(t, "101", row.Find(`[data-testid=decided]`).Text())
			require.Equal(t, "99.0%", row.Find(`[data-testid=approved]`).Text())
			require.Equal(t, "1.0%", row.Find(`[data-testid=rejected]`).Text())
			require.Equal(t, 1, row.Find(`[data-testid=rubber-stamp]`).Length(), "99 % approved, all within a second")
			prop := doc.Find(`[data-testid="proposal-refund/payment.refund"]`)
			require.Equal(t, 1, prop.Length())
			require.Contains(t, prop.Find(`[data-testid=proposal-condition]`).Text(), `action.params["amount"] <= 100.0`)
			canReview := email == "approver@example.com" || email == "admin@example.com"
			require.Equal(t, canReview, prop.Find(`[data-testid=proposal-form]`).Length() == 1)
		}
	})

	t.Run("ThresholdIsConfigurable", func(t *testing.T) {
		doc, _ := c.get(t, c.client(t, "viewer@example.com"), "/policy/rules?window=24h&min=200")
		require.Equal(t, 1, doc.Find(`[data-testid=proposals-none]`).Length(), "101 decisions are fewer than 200")
	})

	t.Run("BadQueriesAre400", func(t *testing.T) {
		hc := c.client(t, "viewer@example.com")
		for _, q := range []string{"window=1h", "min=0", "min=x", "min=1000001"} {
			_, status := c.get(t, hc, "/policy/rules?"+q)
			require.Equal(t, http.StatusBadRequest, status, q)
		}
	})

	t.Run("ReviewIsForApproversAndAdmins", func(t *testing.T) {
		resp, _ := c.post(t, c.client(t, "reviewer@example.com"), "/policy/rules", "/policy/rules/review", reviewForm("rule", vocab.TierAuto))
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		resp, body := c.post(t, c.client(t, "approver@example.com"), "/policy/rules", "/policy/rules/review", reviewForm("rule", vocab.TierAuto))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		doc, err := goquery.NewDocumentFromReader(strings.NewReader(body))
		require.NoError(t, err)
		require.Equal(t, "101", doc.Find(`[data-testid=review-matched]`).Text(), "the narrower rule takes every refund of the history")
		require.Equal(t, "1", doc.Find(`[data-testid=review-let-through]`).Text(), "and would have let the rejected one through")
		require.Equal(t, 1, doc.Find(`[data-testid=review-risky]`).Length())
		require.Equal(t, 0, doc.Find(`[data-testid=review-form]`).Length(), "only admins activate")
		require.Contains(t, doc.Find(`[data-testid=review-rule]`).Text(), "name: refund-payment-refund-auto")
	})

	t.Run("ReviewRefusesWhatTheEvidenceDoesNotSupport", func(t *testing.T) {
		admin := c.client(t, "admin@example.com")
		form := reviewForm("rule", vocab.TierAuto)
		form.Set("kind", "email.send")
		resp, _ := c.post(t, admin, "/policy/rules", "/policy/rules/review", form)
		require.Equal(t, http.StatusConflict, resp.StatusCode)
		form = reviewForm("rule", vocab.TierExplicit)
		resp, _ = c.post(t, admin, "/policy/rules", "/policy/rules/review", form)
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "explicit is not looser")
		form = reviewForm("sometimes", vocab.TierAuto)
		resp, _ = c.post(t, admin, "/policy/rules", "/policy/rules/review", form)
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
		form = reviewForm("grant", vocab.TierAuto)
		form.Set("duration", "8760h")
		resp, _ = c.post(t, admin, "/policy/rules", "/policy/rules/review", form)
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "a grant lasts 1, 7 or 30 days")
	})
}

func TestPromoteRuleToNewVersion(t *testing.T) {
	t.Parallel()
	c := startConsole(t, refundsFlow)
	refundHistory(t, c)
	ctx := context.Background()
	admin := c.client(t, "admin@example.com")
	resp, body := c.post(t, admin, "/policy/rules", "/policy/rules/review", reviewForm("rule", vocab.TierAuto))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	form := confirmForm(t, body)

	t.Run("AdminOnly", func(t *testing.T) {
		resp, _ := c.post(t, c.client(t, "approver@example.com"), "/policy/rules", "/policy/rules/activate", form)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		v, err := store.PolicyGetActive(ctx, c.Pool)
		require.NoError(t, err)
		require.Equal(t, 1, v.Version, "a refused actor activates nothing")
		require.Zero(t, countEvents(t, c, "policy.promoted"))
	})
	t.Run("ConfirmationMustMatch", func(t *testing.T) {
		bad := url.Values{}
		for k, v := range form {
			bad[k] = v
		}
		bad.Set("confirm", strings.Repeat("0", 64))
		resp, _ := c.post(t, admin, "/policy/rules", "/policy/rules/activate", bad)
		require.Equal(t, http.StatusConflict, resp.StatusCode)
		require.Zero(t, countEvents(t, c, "policy.promoted"))
	})
	t.Run("WithoutCSRF", func(t *testing.T) {
		resp, err := admin.PostForm(c.Addr+"/policy/rules/activate", form)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	})

	resp, body = c.post(t, admin, "/policy/rules", "/policy/rules/activate", form)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	require.Equal(t, "/policy/rules?done=rule", resp.Header.Get("Location"))
	v, err := store.PolicyGetActive(ctx, c.Pool)
	require.NoError(t, err)
	require.Equal(t, 2, v.Version)
	require.Contains(t, v.Source, "  - name: refund-payment-refund-auto\n")
	require.Equal(t, 1, countEvents(t, c, "policy.promoted"))
	require.Equal(t, 2, countEvents(t, c, "policy.activated"), "the setup's and this one")
	var details json.RawMessage
	require.NoError(t, c.Pool.QueryRow(ctx, `SELECT details FROM audit_events WHERE kind = 'policy.promoted'`).Scan(&details))
	require.JSONEq(t, fmt.Sprintf(`{"mode":"rule","rule":"refund","new_rule":"refund-payment-refund-auto","action_kind":"payment.refund",
		"tier":"auto","decided":101,"approved":100,"matched":101,"let_through":1,"version":2,"when":%q,"since":%q}`,
		extract(t, details, "when"), extract(t, details, "since")), string(details))

	t.Run("AppliesToTheNextRun", func(t *testing.T) {
		run, _, err := c.Engine.Start(ctx, workflow.StartParams{Workflow: "refunds", BusinessKey: "small", Input: []byte("42"), StartedBy: "test"})
		require.NoError(t, err)
		run = c.WaitRun(t, run.ID, vocab.RunCompleted)
		require.JSONEq(t, `"approve"`, string(run.Output), "approved by the policy, no human")
		run, req := c.startRun(t, "refunds", "over-the-range", 300.0, "test")
		require.Equal(t, "refund", req.Rule, "outside the observed range the broad rule still decides")
		require.Equal(t, vocab.RunWaitingHuman, run.Status)
	})
}

func extract(t *testing.T, raw json.RawMessage, key string) string {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	s, _ := m[key].(string)
	return s
}

func TestPromoteGrant(t *testing.T) {
	t.Parallel()
	c := startConsole(t, refundsFlow)
	refundHistory(t, c)
	ctx := context.Background()
	admin := c.client(t, "admin@example.com")
	resp, body := c.post(t, admin, "/policy/rules", "/policy/rules/review", reviewForm("grant", vocab.TierBatched))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, body, "now &lt; timestamp(")
	resp, _ = c.post(t, admin, "/policy/rules", "/policy/rules/activate", confirmForm(t, body))
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/policy/rules?done=grant", resp.Header.Get("Location"))

	grants, err := store.GrantListLive(ctx, c.Pool)
	require.NoError(t, err)
	require.Len(t, grants, 1)
	g := grants[0]
	require.Equal(t, vocab.TierBatched, g.Tier)
	require.Equal(t, []store.ParamRange{{Param: "amount", Min: 10, Max: 100}}, g.Ranges)
	v, err := store.PolicyGetActive(ctx, c.Pool)
	require.NoError(t, err)
	require.Equal(t, 1, v.Version, "a grant leaves the policy document as it is")
	require.Equal(t, 1, countEvents(t, c, "policy.promoted"))

	_, req := c.startRun(t, "refunds", "granted", 42.0, "test")
	require.Equal(t, "grant-"+fmt.Sprint(g.ID), req.Rule)
	require.Equal(t, vocab.TierBatched, req.Tier)

	t.Run("TheApprovalsAPIHonoursTheGrant", func(t *testing.T) {
		agent := c.apiScoped(t, "reviewer@example.com", account.ScopeApprovalsWrite)
		var a ask.Approval
		require.Equal(t, 202, agent.do("POST", "/approvals", map[string]any{"idempotency_key": "granted-api",
			"action": map[string]any{"kind": "payment.refund", "summary": "Refund 42", "params": map[string]any{"amount": 42}}}, &a))
		require.Equal(t, "grant-"+fmt.Sprint(g.ID), a.Rule)
		require.Equal(t, string(vocab.TierBatched), a.Tier)
		require.Equal(t, 202, agent.do("POST", "/approvals", map[string]any{"idempotency_key": "outside-api",
			"action": map[string]any{"kind": "payment.refund", "summary": "Refund 420", "params": map[string]any{"amount": 420}}}, &a))
		require.Equal(t, "refund", a.Rule)
	})

	t.Run("EditsAreJudgedWithTheGrant", func(t *testing.T) {
		reviewer := c.client(t, "reviewer@example.com")
		edit := func(req *store.Request, amount string) (*http.Response, string) {
			page := "/requests/" + req.ID
			return c.post(t, reviewer, page, page+"/decision", url.Values{"verdict": {"edit"},
				"payload_hash": {req.PayloadHash}, "edited_params": {`{"amount": ` + amount + `}`}})
		}
		// Out of the grant's range, the edit falls under the broad rule:
		// stricter than the grant's batched tier, so it is refused.
		resp, body := edit(req, "400")
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
		require.Contains(t, body, `rule &#34;refund&#34;`)
		// Into the grant's range, an explicit refund's edit falls under it.
		run, big := c.startRun(t, "refunds", "edited-in", 300.0, "test")
		require.Equal(t, "refund", big.Rule)
		resp, _ = edit(big, "60")
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		d, err := store.DecisionGetByRequest(ctx, c.Pool, big.ID)
		require.NoError(t, err)
		require.Equal(t, "grant-"+fmt.Sprint(g.ID), *d.EditedRule)
		c.WaitRun(t, run.ID, vocab.RunCompleted)
	})

	doc, _ := c.get(t, admin, "/policy/rules?window=24h")
	require.Equal(t, "in force", doc.Find(fmt.Sprintf(`[data-testid=grant-%d] [data-testid=grant-state]`, g.ID)).Text())

	t.Run("RevokeIsAdminOnly", func(t *testing.T) {
		resp, _ := c.post(t, c.client(t, "approver@example.com"), "/policy/rules", fmt.Sprintf("/policy/grants/%d/revoke", g.ID), url.Values{})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Zero(t, countEvents(t, c, "policy.grant_revoked"))
	})
	resp, _ = c.post(t, admin, "/policy/rules", fmt.Sprintf("/policy/grants/%d/revoke", g.ID), url.Values{})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, 1, countEvents(t, c, "policy.grant_revoked"))
	resp, _ = c.post(t, admin, "/policy/rules", fmt.Sprintf("/policy/grants/%d/revoke", g.ID), url.Values{})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "a revoked grant cannot be revoked again")

	_, req = c.startRun(t, "refunds", "revoked", 42.0, "test")
	require.Equal(t, "refund", req.Rule, "a revoked grant no longer applies")
	require.Equal(t, vocab.TierExplicit, req.Tier)
}

// TestRuleReviewStatisticsAreBounded: a review regenerates its proposal from
// the window's statistics, so it takes a statistics slot before reading them,
// as the page does: with every slot taken it is refused before it reads
// anything (not after its statistics and its simulation ran), and once the
// slots free it goes through. Not parallel: it takes the process-wide slots.
func TestRuleReviewStatisticsAreBounded(t *testing.T) {
	c := startConsole(t, refundsFlow)
	refundHistory(t, c)
	approver := c.client(t, "approver@example.com")

	releaseStats, releaseSims := web.HoldRuleStats(), web.HoldSimulations()
	resp, body := c.post(t, approver, "/policy/rules", "/policy/rules/review", reviewForm("grant", vocab.TierAuto))
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Contains(t, body, "rule statistics are already being computed", "refused at the statistics, before the simulation")
	releaseSims()
	releaseStats()

	resp, body = c.post(t, approver, "/policy/rules", "/policy/rules/review", reviewForm("grant", vocab.TierAuto))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, body, "already")
}
