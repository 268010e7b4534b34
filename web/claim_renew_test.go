package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
)

// TestBrowserReviewPageRenewsMyClaim: a claim lapses after five minutes
// without activity, so the claimer's open review page keeps it alive.
func TestBrowserReviewPageRenewsMyClaim(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	_, req := c.startRun(t, "support_triage", "T-claim", demo.Ticket{ID: "T-claim", Customer: "ada@example.com",
		Subject: "Refund please", Body: "It arrived broken.", OrderTotal: 80}, "api@example.com")
	ctx := context.Background()
	claimedAt := time.Now().Add(-4 * time.Minute)
	_, err := store.ClaimSet(ctx, c.Pool, req.ID, "reviewer@example.com", claimedAt)
	require.NoError(t, err)

	b := browser(t)
	c.signIn(b, t, "reviewer@example.com")
	require.NoError(t, chromedp.Run(b, chromedp.Navigate(c.Addr+"/requests/"+req.ID),
		chromedp.WaitVisible(`[data-testid=review]`, chromedp.ByQuery)))
	require.Eventually(t, func() bool {
		live, err := store.ClaimListLive(ctx, c.Pool, []string{req.ID}, time.Now())
		require.NoError(t, err)
		cl := live[req.ID]
		return cl != nil && cl.RenewedAt.After(claimedAt.Add(3*time.Minute))
	}, 10*time.Second, 100*time.Millisecond, "opening the review page renews the claim")
}
