package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// evalUntil evaluates js until it returns true, for up to 15 s.
func evalUntil(ctx context.Context, t *testing.T, js, what string) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var ok bool
		if chromedp.Run(ctx, chromedp.Evaluate(js, &ok)) == nil && ok {
			return
		}
	}
	t.Fatalf("timed out waiting: %s", what)
}

// TestBrowserInbox drives the inbox as a reviewer: its density at 1280x900,
// the `a` key on a request they cannot decide, live counts and the
// announcement of new rows, and filters that apply on change.
func TestBrowserInbox(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	bg := context.Background()
	// The oldest request, first in the inbox: only approvers may decide it.
	blocked := factory.Request(bg, t, c.Pool, &factory.RequestOpts{Roles: []vocab.Role{vocab.RoleApprover},
		Action: &workflow.Action{Kind: "payments.refund", Summary: "Refund order 1042 in full",
			Params: map[string]any{"amount": 842.0, "currency": "EUR"}, Risk: "high"}})
	for i := range 30 {
		factory.Request(bg, t, c.Pool, &factory.RequestOpts{Action: &workflow.Action{Kind: "crm.update",
			Summary: fmt.Sprintf("Update 2 CRM fields of lead %d with a longer summary that would wrap", i),
			Params:  map[string]any{"n": i}, Risk: "low", Reversible: true}})
	}
	// Batched requests in a batch, with a note: still one line each.
	for i := range 6 {
		r := factory.Request(bg, t, c.Pool, &factory.RequestOpts{Tier: factory.Ptr(vocab.TierBatched), Rule: factory.Ptr("crm-small"),
			Action: &workflow.Action{Kind: "crm.update", Summary: fmt.Sprintf("Batched update %d of a lead with a long summary", i), Risk: "low"}})
		_, _, _, err := store.BatchJoin(bg, c.Pool, r.ID, "crm-small", "crm-small", r.Workflow, "crm.update", 100, time.Now().Add(time.Hour))
		require.NoError(t, err)
	}
	ctx := browser(t)
	require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(1280, 900)))
	c.signIn(ctx, t, "reviewer@example.com")

	t.Run("Density", func(t *testing.T) {
		var m struct {
			Visible, Rows    int
			MaxH, MinH       float64
			ViewportH, Width float64
		}
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => {
			const rs = [...document.querySelectorAll("[data-testid=inbox-row]")];
			const hs = rs.map(r => r.getBoundingClientRect().height);
			return {
				Visible: rs.filter(r => { const b = r.getBoundingClientRect(); return b.top >= 0 && b.bottom <= innerHeight; }).length,
				Rows: rs.length, MaxH: Math.max(...hs), MinH: Math.min(...hs), ViewportH: innerHeight, Width: innerWidth,
			};
		})()`, &m)))
		t.Logf("inbox at %.0fx%.0f: %d of %d rows fully visible, row height %.1f-%.1f px", m.Width, m.ViewportH, m.Visible, m.Rows, m.MinH, m.MaxH)
		require.Equal(t, 1280.0, m.Width)
		require.GreaterOrEqual(t, m.Visible, 25, "at least 25 rows in the first screen")
		require.Equal(t, 37, m.Rows)
		require.Less(t, m.MaxH, 1.5*m.MinH+1, "every row is one line, batched or not")
		var batched int
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll("[data-testid=inbox-row] a[href^='/batches/']").length`, &batched)))
		require.Equal(t, 6, batched, "the batched rows were measured")
	})

	t.Run("AKeySaysWhy", func(t *testing.T) {
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("j")))
		evalUntil(ctx, t, `document.querySelector("tr.selected")?.dataset.id === "`+blocked.ID+`"`, "the first row is selected")
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("a")))
		waitText(ctx, t, "#inbox-why", "needs one of the roles approver")
		var loc string
		require.NoError(t, chromedp.Run(ctx, chromedp.Location(&loc)))
		require.True(t, strings.HasSuffix(loc, "/"), "still on the inbox: %s", loc)
	})

	t.Run("LiveCountsAndAnnouncement", func(t *testing.T) {
		waitText(ctx, t, "[data-testid=count-explicit]", "Explicit: 31")
		factory.Request(bg, t, c.Pool, &factory.RequestOpts{Action: &workflow.Action{Kind: "crm.update", Summary: "A brand new request"}})
		require.NoError(t, notify.Send(bg, c.Pool, notify.Message{Type: notify.KindRequest}))
		waitText(ctx, t, "[data-testid=count-explicit]", "Explicit: 32")
		waitText(ctx, t, "#inbox-announce", "1 new request")
		var politely string
		require.NoError(t, chromedp.Run(ctx, chromedp.AttributeValue("#inbox-announce", "aria-live", &politely, nil, chromedp.ByQuery)))
		require.Equal(t, "polite", politely)
	})

	t.Run("FiltersApplyOnChange", func(t *testing.T) {
		var hidden bool
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`getComputedStyle(document.querySelector("[data-testid=filter-submit]")).display === "none"`, &hidden)))
		require.True(t, hidden, "no submit button needed with script")
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=filter-can]`)))
		waitLocation(ctx, t, "can=1")
		evalUntil(ctx, t, `document.querySelectorAll("[data-testid=inbox-row]").length === 37`, "the blocked request is filtered out")
		waitText(ctx, t, "[data-testid=count-explicit]", "Explicit: 31")
		evalUntil(ctx, t, `document.activeElement.name === "can"`, "the focus returns to the filter that changed")
		// Live refreshes keep the filter.
		require.NoError(t, notify.Send(bg, c.Pool, notify.Message{Type: notify.KindRequest}))
		time.Sleep(time.Second)
		var rows int
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll("[data-testid=inbox-row]").length`, &rows)))
		require.Equal(t, 37, rows)
	})

	t.Run("PhoneHasNoSideScroll", func(t *testing.T) {
		var over float64
		require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(390, 844), chromedp.Navigate(c.Addr+"/"),
			chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery),
			chromedp.Evaluate(`document.documentElement.scrollWidth - innerWidth`, &over)))
		require.LessOrEqual(t, over, 0.0, "the inbox fits 390 px")
	})
}
