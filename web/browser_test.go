package web_test

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
)

func TestBrowserApprove(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := browser(t)
	run, req := c.startRun(t, "support_triage", "T-1", demo.Ticket{ID: "T-1", Customer: "ada@example.com",
		Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")

	c.signIn(ctx, t, "reviewer@example.com")
	screenshot(ctx, t, "inbox")
	require.Contains(t, text(ctx, t, `[data-testid=inbox]`), "Reply to ada@example.com")
	require.NoError(t, chromedp.Run(ctx, chromedp.Click(`[data-testid=row-link]`, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid=review]`, chromedp.ByQuery)))
	screenshot(ctx, t, "review")
	require.Contains(t, text(ctx, t, `[data-testid=summary]`), req.Summary)
	require.Contains(t, text(ctx, t, `[data-testid=policy]`), "outbound-email")
	require.NoError(t, chromedp.Run(ctx, chromedp.Click(`[data-testid=approve]`, chromedp.ByQuery),
		chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
	// The run finishes after the page loaded; its badge updates live.
	waitText(ctx, t, `#run-status`, "completed")
	screenshot(ctx, t, "approved")
	require.Equal(t, store.RunCompleted, c.WaitRun(t, run.ID, store.RunCompleted).Status)
	require.Contains(t, text(ctx, t, `[data-testid=decided]`), "approve by reviewer@example.com")
}
