package web_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// TestBrowserReview drives the review page's client side: j/k between
// requests, a that asks again on an irreversible action and goes on to the
// next request, one-key approval of a low-risk one, a form that closes live
// when someone else decides, and the decision bar on a phone.
func TestBrowserReview(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := browser(t)
	c.signIn(ctx, t, "reviewer@example.com")
	email := func(key string) *store.Request {
		_, req := c.startRun(t, "support_triage", key, demo.Ticket{ID: key, Customer: key + "@example.com",
			Subject: "How do I login?", Body: "password"}, "api@example.com")
		return req
	}
	status := func(id string) vocab.RequestStatus {
		r, err := store.RequestGet(t.Context(), c.Pool, id)
		require.NoError(t, err)
		return r.Status
	}

	t.Run("KeysConfirmAndAdvance", func(t *testing.T) {
		r1, r2 := email("T-b1"), email("T-b2")
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+r1.ID),
			chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery)))
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("j")))
		waitLocation(ctx, t, "/requests/"+r2.ID)
		require.NoError(t, chromedp.Run(ctx, chromedp.WaitVisible(`[data-testid=review]`, chromedp.ByQuery), chromedp.KeyEvent("k")))
		waitLocation(ctx, t, "/requests/"+r1.ID)

		// Not reversible: the first a only asks.
		require.NoError(t, chromedp.Run(ctx, chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery), chromedp.KeyEvent("a")))
		waitText(ctx, t, `[data-testid=confirm-hint]`, "press a again")
		screenshot(ctx, t, "review-confirm")
		time.Sleep(300 * time.Millisecond)
		require.Equal(t, vocab.RequestPending, status(r1.ID), "one a does not approve an irreversible action")
		// Another key cancels; then a, a approves.
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("x")))
		waitText(ctx, t, `[data-testid=confirm-hint]`, "asks twice")
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("a"), chromedp.KeyEvent("a")))
		waitLocation(ctx, t, "/requests/"+r2.ID)
		require.Contains(t, text(ctx, t, `[data-testid=flash]`), "Approved")
		require.Contains(t, text(ctx, t, `[data-testid=toast-link]`), "T-b1@example.com", "the toast names what was decided")
		require.Equal(t, vocab.RequestApproved, status(r1.ID))
		require.Equal(t, vocab.RequestPending, status(r2.ID))
		_, err := c.Engine.Decide(t.Context(), workflow.DecideParams{RequestID: r2.ID, Actor: workflow.Actor{Name: "admin@example.com",
			Roles: []vocab.Role{vocab.RoleAdmin}}, Verdict: vocab.VerdictReject, Reason: "tidy up", PayloadHash: r2.PayloadHash})
		require.NoError(t, err)
	})

	t.Run("LowRiskIsOneKey", func(t *testing.T) {
		run, req := c.startRun(t, "lead_enrichment", "L-one", demo.Lead{ID: "L-one", Company: "Globex",
			Email: "hank@globex.example", Employees: 900}, "api@example.com")
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+req.ID),
			chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery)))
		require.Zero(t, count(ctx, t, `[data-testid=confirm-hint]`), "low risk and reversible: no confirmation")
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("a"), chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
		require.Equal(t, vocab.RequestApproved, status(req.ID))
		c.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunWaitingHuman)
	})

	t.Run("DecidedElsewhereClosesTheForm", func(t *testing.T) {
		req := email("T-live")
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+req.ID),
			chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery),
			chromedp.SendKeys(`[data-testid=comment]`, "half a thought", chromedp.ByQuery)))
		time.Sleep(500 * time.Millisecond) // the event stream connects
		_, err := c.Engine.Decide(t.Context(), workflow.DecideParams{RequestID: req.ID, Actor: workflow.Actor{Name: "approver@example.com",
			Roles: []vocab.Role{vocab.RoleApprover}}, Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		waitText(ctx, t, `[data-testid=decided-live]`, "Approved by approver@example.com")
		var disabled bool
		var comment string
		require.NoError(t, chromedp.Run(ctx,
			chromedp.Evaluate(`document.getElementById("decision-fields").disabled`, &disabled),
			chromedp.Value(`[data-testid=comment]`, &comment, chromedp.ByQuery)))
		screenshot(ctx, t, "review-decided-live")
		require.True(t, disabled, "the form is closed")
		require.Equal(t, "half a thought", comment, "what was typed stays")
	})

	t.Run("PhoneDecisionBar", func(t *testing.T) {
		req := email("T-phone")
		require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(375, 812),
			chromedp.Navigate(c.Addr+"/requests/"+req.ID),
			chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery)))
		var inView bool
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => {
			const b = document.querySelector("[data-testid=bar-approve]").getBoundingClientRect();
			return b.height > 0 && b.top >= 0 && b.bottom <= window.innerHeight && window.scrollY === 0;
		})()`, &inView)))
		screenshot(ctx, t, "review-phone")
		require.True(t, inView, "the decision bar is on screen without scrolling")
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=bar-approve]`), chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
		require.Equal(t, vocab.RequestApproved, status(req.ID))
	})
}

// count returns how many elements match sel.
func count(ctx context.Context, t *testing.T, sel string) int {
	t.Helper()
	var n int
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll(`+jsString(sel)+`).length`, &n)))
	return n
}

func jsString(s string) string { b, _ := json.Marshal(s); return string(b) }
