package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/client"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// activeItem is the data-id of the batch item that has the focus ("" if none).
func activeItem(ctx context.Context, t *testing.T) string {
	t.Helper()
	var id string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => { const e = document.activeElement; return e && e.dataset && e.dataset.id || "" })()`, &id)))
	return id
}

func selectedBoxes(ctx context.Context, t *testing.T) []bool {
	t.Helper()
	var out []bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll("[data-testid=select]")).map(b => b.checked)`, &out)))
	return out
}

// noSideScroll fails when the page is wider than the window.
func noSideScroll(ctx context.Context, t *testing.T, page string) {
	t.Helper()
	var over int
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.documentElement.scrollWidth - document.documentElement.clientWidth`, &over)))
	require.LessOrEqual(t, over, 0, "%s scrolls sideways by %d px at 390 px", page, over)
}

// TestBrowserBatchKeyboard: select all / none, j/k move the focus between
// items, x toggles, a approves the selected ones; the keys yield to a
// focused field and can be switched off; the checkboxes are named by their
// items; the outcome lists every item; the pages fit a 390 px phone.
func TestBrowserBatchKeyboard(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	batchID, _ := readyBatch(t, c)
	ctx := browser(t)
	c.signIn(ctx, t, "reviewer@example.com")
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/batches/"+batchID),
		chromedp.WaitVisible(`[data-testid=batch-form]`, chromedp.ByQuery)))

	t.Run("NamedByTheirItems", func(t *testing.T) {
		var names []string
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll("[data-testid=select]")).map(b =>
			b.getAttribute("aria-labelledby").split(" ").map(id => document.getElementById(id).textContent.trim()).join(" "))`, &names)))
		require.Len(t, names, 5)
		seen := map[string]bool{}
		for _, n := range names {
			require.Regexp(t, `^Approve \S`, n)
			require.False(t, seen[n], "two checkboxes are both named %q", n)
			seen[n] = true
		}
	})

	t.Run("SelectAllNone", func(t *testing.T) {
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=select-none]`)))
		require.Equal(t, []bool{false, false, false, false, false}, selectedBoxes(ctx, t))
		require.Equal(t, "0 of 5 selected", text(ctx, t, `[data-testid=selected-count]`))
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=select-all]`)))
		require.Equal(t, []bool{true, true, true, true, true}, selectedBoxes(ctx, t))
	})

	var ids []string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll("[data-testid=batch-item]")).map(r => r.dataset.id)`, &ids)))

	t.Run("KeysYieldToAField", func(t *testing.T) {
		require.NoError(t, chromedp.Run(ctx, chromedp.Focus(`[data-testid=batch-reason]`, chromedp.ByQuery), chromedp.KeyEvent("jxk")))
		var v string
		require.NoError(t, chromedp.Run(ctx, chromedp.Value(`[data-testid=batch-reason]`, &v, chromedp.ByQuery)))
		require.Equal(t, "jxk", v)
		require.Equal(t, []bool{true, true, true, true, true}, selectedBoxes(ctx, t))
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => { const f = document.querySelector("[data-testid=batch-reason]"); f.value = ""; f.blur(); })()`, nil)))
	})

	t.Run("SwitchedOff", func(t *testing.T) {
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=open-keys-help]`), clickOn(`[data-testid=keys-enabled]`),
			clickOn(`#keys-help [data-close-dialog]`), chromedp.Evaluate(`document.activeElement.blur()`, nil), chromedp.KeyEvent("j")))
		require.Empty(t, activeItem(ctx, t), "j does nothing while the shortcuts are off")
		// The choice lasts across pages.
		require.NoError(t, chromedp.Run(ctx, chromedp.Reload(), chromedp.WaitVisible(`[data-testid=batch-form]`, chromedp.ByQuery), chromedp.KeyEvent("j")))
		require.Empty(t, activeItem(ctx, t))
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=open-keys-help]`), clickOn(`[data-testid=keys-enabled]`),
			clickOn(`#keys-help [data-close-dialog]`), chromedp.Evaluate(`document.activeElement.blur()`, nil)))
	})

	t.Run("Keys", func(t *testing.T) {
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("j")))
		require.Equal(t, ids[0], activeItem(ctx, t), "j focuses the first item")
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("jj")))
		require.Equal(t, ids[2], activeItem(ctx, t))
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("x"), chromedp.KeyEvent("k"), chromedp.KeyEvent("x")))
		require.Equal(t, ids[1], activeItem(ctx, t))
		require.Equal(t, []bool{true, false, false, true, true}, selectedBoxes(ctx, t))
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("a"), chromedp.WaitVisible(`[data-testid=batch-outcome]`, chromedp.ByQuery)))
		require.Equal(t, "3", text(ctx, t, `[data-testid=outcome-approved]`))
		var words []string
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll("[data-testid=outcome-item] [data-testid=outcome-word]")).map(e => e.textContent)`, &words)))
		require.Equal(t, []string{"approved", "left pending", "left pending", "approved", "approved"}, words)
		var focused string
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.activeElement.id`, &focused)))
		require.Equal(t, "outcome-title", focused, "focus goes to the outcome")
		require.Contains(t, text(ctx, t, `[data-testid=no-next-batch]`), "No other batch is ready")
	})

	t.Run("Phone", func(t *testing.T) {
		require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(390, 844)))
		for i := range 5 { // a second batch, with items to show
			c.startRun(t, "support_triage", fmt.Sprint("C-", i), demo.Ticket{ID: fmt.Sprint("C", i), Customer: "a@example.com",
				Subject: "Delivery time", Body: "when?"}, "api@example.com")
		}
		var second string
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/batches"), chromedp.WaitVisible(`[data-testid=batch-link]`, chromedp.ByQuery),
			chromedp.Evaluate(`document.querySelector("[data-testid=batch-link]").getAttribute("href")`, &second)))
		for _, page := range []string{"/batches", "/batches/" + batchID, second, "/runs", "/history", "/policy"} {
			require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+page), chromedp.WaitVisible(`main`, chromedp.ByQuery)))
			time.Sleep(100 * time.Millisecond)
			noSideScroll(ctx, t, page)
		}
		var width float64
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+second), chromedp.WaitVisible(`[data-testid=batch-item]`, chromedp.ByQuery),
			chromedp.Evaluate(`document.querySelector("[data-testid=batch-item] [data-testid=item-summary]").getBoundingClientRect().width`, &width)))
		noSideScroll(ctx, t, second)
		require.Greater(t, width, 200.0, "an item's summary has the card's width, not one character's")
	})
}

// TestBrowserRunsLiveAndCancel: a run started while the runs page is open
// appears on it with its proposed action; cancelling asks first.
func TestBrowserRunsLiveAndCancel(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := browser(t)
	c.signIn(ctx, t, "admin@example.com")
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/runs"), chromedp.WaitVisible(`[data-testid=runs-empty]`, chromedp.ByQuery)))
	// Let the page's event stream connect before the run starts.
	time.Sleep(500 * time.Millisecond)
	run, req := c.startRun(t, "support_triage", "live-1", demo.Ticket{ID: "L1", Customer: "a@example.com",
		Subject: "Refund please", Body: "It broke."}, "api@example.com")
	require.NoError(t, chromedp.Run(ctx, chromedp.WaitVisible(`[data-testid=run-row][data-id="`+run.ID+`"] [data-testid=run-action-pending]`, chromedp.ByQuery)))
	var href string
	require.NoError(t, chromedp.Run(ctx, chromedp.AttributeValue(`[data-testid=run-action-link]`, "href", &href, nil, chromedp.ByQuery)))
	require.Equal(t, "/requests/"+req.ID, href)

	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/runs/"+run.ID), chromedp.WaitVisible(`[data-testid=cancel-run]`, chromedp.ByQuery)))
	var visible bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector("[data-testid=confirm-cancel-run]").checkVisibility()`, &visible)))
	require.False(t, visible, "the cancelling button is behind a confirmation")
	require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=cancel-run]`), chromedp.WaitVisible(`[data-testid=confirm-cancel-run]`, chromedp.ByQuery),
		clickOn(`[data-testid=confirm-cancel-run]`), chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
	require.Contains(t, text(ctx, t, `[data-testid=flash]`), "Run cancelled")
	c.WaitRun(t, run.ID, vocab.RunCancelled)
}

// TestBrowserReasonSurvivesSignIn: a reviewer types a rejection's reason,
// the session ends meanwhile (signed out elsewhere), the rejection leads to
// the sign-in page, and signing in returns to the request with the reason
// put back; nothing was decided by the refused post.
func TestBrowserReasonSurvivesSignIn(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	_, req := c.startRun(t, "support_triage", "S-1", demo.Ticket{ID: "S1", Customer: "a@example.com",
		Subject: "How do I login?", Body: "password"}, "api@example.com")
	ctx := browser(t)
	c.signIn(ctx, t, "reviewer@example.com")
	const reason = "The customer already has a ticket open for this — merging."
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+req.ID), chromedp.WaitVisible(`[data-testid=approve]`, chromedp.ByQuery),
		chromedp.Evaluate(`(() => { const d = document.getElementById("reason").closest("details"); if (d) d.open = true; })()`, nil),
		chromedp.SendKeys(`#reason`, reason, chromedp.ByQuery)))

	// Signed out elsewhere: every session of the user ends.
	other, err := client.SignIn(c.Addr, "reviewer@example.com", password)
	require.NoError(t, err)
	resp, _, err := other.Post("/logout", url.Values{})
	require.NoError(t, err)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

	require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=reject]`), chromedp.WaitVisible(`[data-testid=login-form]`, chromedp.ByQuery)))
	var loc string
	require.NoError(t, chromedp.Run(ctx, chromedp.Location(&loc)))
	require.Contains(t, loc, "/login?next="+url.QueryEscape("/requests/"+req.ID))
	got, err := store.RequestGet(context.Background(), c.Pool, req.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestPending, got.Status, "the post of an ended session decides nothing")

	require.NoError(t, chromedp.Run(ctx,
		chromedp.SendKeys(`[data-testid=email]`, "reviewer@example.com", chromedp.ByQuery),
		chromedp.SendKeys(`[data-testid=password]`, password, chromedp.ByQuery),
		clickOn(`[data-testid=login-submit]`),
		chromedp.WaitVisible(`[data-testid=draft-restored]`, chromedp.ByQuery)))
	require.NoError(t, chromedp.Run(ctx, chromedp.Location(&loc)))
	require.Equal(t, c.Addr+"/requests/"+req.ID, loc)
	var v string
	require.NoError(t, chromedp.Run(ctx, chromedp.Value(`#reason`, &v, chromedp.ByQuery)))
	require.Equal(t, reason, v)

	// Rejecting now uses it; the draft is gone once decided.
	require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=reject]`)))
	require.Eventually(t, func() bool {
		got, err := store.RequestGet(context.Background(), c.Pool, req.ID)
		return err == nil && got.Status == vocab.RequestRejected
	}, 10*time.Second, 50*time.Millisecond)
	// The decision's redirect may still be loading: a navigation that
	// interrupts it is aborted, so try again.
	var navErr error
	for range 5 {
		if navErr = chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+req.ID), chromedp.WaitVisible(`main`, chromedp.ByQuery)); navErr == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.NoError(t, navErr)
	var left []string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`Object.keys(sessionStorage).filter(k => k.startsWith("countersign-"))`, &left)))
	require.Empty(t, left, "a decided request keeps no draft")
}

// TestBrowserPolicyActivation: "Activate…" shows the confirmation with the
// diff and takes the focus there; confirming activates the next version.
func TestBrowserPolicyActivation(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := browser(t)
	c.signIn(ctx, t, "admin@example.com")
	raised := strings.ReplaceAll(string(policyExample()), "> 500.0", "> 800.0")
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/policy"), chromedp.WaitVisible(`[data-testid=candidate]`, chromedp.ByQuery),
		chromedp.SetValue(`[data-testid=candidate]`, raised, chromedp.ByQuery),
		clickOn(`[data-testid=apply]`), chromedp.WaitVisible(`[data-testid=confirm-activation]`, chromedp.ByQuery)))
	var focused string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.activeElement.id`, &focused)))
	require.Equal(t, "confirm-title", focused, "focus goes to the confirmation")
	require.Contains(t, text(ctx, t, `[data-testid=policy-diff]`), "> 800.0")
	require.Contains(t, text(ctx, t, `[data-testid=active-version]`), "Stored version 1 is active")
	require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=confirm-apply]`), chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
	require.Contains(t, text(ctx, t, `[data-testid=active-version]`), "Stored version 2 is active")
}

// TestBrowserFlagUnusableRefused: the flag form makes the reviewer choose a
// category, and a reason of spaces (which the browser's "required" lets
// through) brings the run page back with the form open, saying what is
// wrong, with the category and what was typed kept.
func TestBrowserFlagUnusableRefused(t *testing.T) {
	t.Parallel()
	c := startConsole(t, metricsWorkflows)
	raw, _ := json.Marshal(struct{}{})
	run, _, err := c.Engine.Start(context.Background(), workflow.StartParams{Workflow: "m_ok", BusinessKey: "flag-1", Input: raw, StartedBy: "api@example.com"})
	require.NoError(t, err)
	c.WaitRun(t, run.ID, vocab.RunCompleted)
	ctx := browser(t)
	c.signIn(ctx, t, "reviewer@example.com")
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/runs/"+run.ID), chromedp.WaitVisible(`[data-testid=flag-unusable]`, chromedp.ByQuery),
		clickOn(`[data-testid=flag-unusable]`), chromedp.WaitVisible(`[data-testid=unusable-reason]`, chromedp.ByQuery),
		chromedp.SendKeys(`[data-testid=unusable-reason]`, "   ", chromedp.ByQuery)))
	var valid bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector("[data-testid=unusable-form]").checkValidity()`, &valid)))
	require.False(t, valid, "no category chosen yet")
	require.NoError(t, chromedp.Run(ctx, chromedp.SetValue(`[data-testid=unusable-category]`, "format", chromedp.ByQuery),
		clickOn(`[data-testid=submit-unusable]`), chromedp.WaitVisible(`[data-testid=unusable-error]`, chromedp.ByQuery)))
	require.Equal(t, "Say why the output is unusable (a reason is required).", text(ctx, t, `[data-testid=unusable-error]`))
	var category, reason string
	require.NoError(t, chromedp.Run(ctx, chromedp.Value(`[data-testid=unusable-category]`, &category, chromedp.ByQuery),
		chromedp.Value(`[data-testid=unusable-reason]`, &reason, chromedp.ByQuery)))
	require.Equal(t, "format", category)
	require.Equal(t, "   ", reason)

	require.NoError(t, chromedp.Run(ctx, chromedp.SendKeys(`[data-testid=unusable-reason]`, "Half in French.", chromedp.ByQuery),
		clickOn(`[data-testid=submit-unusable]`), chromedp.WaitVisible(`[data-testid=run-unusable]`, chromedp.ByQuery)))
	require.Contains(t, text(ctx, t, `[data-testid=flash]`), "Run flagged unusable")
	require.Contains(t, text(ctx, t, `[data-testid=run-unusable]`), "Half in French.")
}
