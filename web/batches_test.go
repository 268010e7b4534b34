package web_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

const smallBatches = `version: 1
rules:
  - name: ticket-triage
    when: action.kind == "ticket.update"
    tier: batched
    batch: {group_by: [action.kind], max_size: 5, max_wait: 1h}
`

// readyBatch fills a batch of five ticket updates.
func readyBatch(t *testing.T, c *console) (string, []*store.Run) {
	t.Helper()
	_, err := policystore.Apply(context.Background(), c.Pool, []byte(smallBatches), "setup")
	require.NoError(t, err)
	c.App.Policies.Invalidate()
	var runs []*store.Run
	var batchID string
	for i := range 5 {
		run, req := c.startRun(t, "support_triage", fmt.Sprint("B-", i), demo.Ticket{ID: fmt.Sprint(i), Customer: "a@example.com",
			Subject: "Delivery time", Body: "when?"}, "api@example.com")
		require.Equal(t, vocab.TierBatched, req.Tier)
		batchID = *req.BatchID
		runs = append(runs, run)
	}
	b, err := store.BatchGet(context.Background(), c.Pool, batchID)
	require.NoError(t, err)
	require.Equal(t, vocab.BatchReady, b.Status)
	return batchID, runs
}

func TestBrowserBatch(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	batchID, runs := readyBatch(t, c)
	ctx := browser(t)
	c.signIn(ctx, t, "reviewer@example.com")

	require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=nav-batches]`),
		chromedp.WaitVisible(`[data-testid=batch-link]`, chromedp.ByQuery),
		clickOn(`[data-testid=batch-link]`),
		chromedp.WaitVisible(`[data-testid=batch-form]`, chromedp.ByQuery)))
	var n int
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll("[data-testid=batch-item] input:checked").length`, &n)))
	require.Equal(t, 5, n, "every item starts selected")
	var deselected []string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => { const boxes = document.querySelectorAll("[data-testid=select]");
		boxes[1].click(); boxes[3].click(); return [boxes[1].value, boxes[3].value]; })()`, &deselected)))
	screenshot(ctx, t, "batch")
	require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=approve-selected]`),
		chromedp.WaitVisible(`[data-testid=batch-outcome]`, chromedp.ByQuery)))
	require.Equal(t, "3", text(ctx, t, `[data-testid=outcome-approved]`))
	require.Equal(t, "2", text(ctx, t, `[data-testid=outcome-left]`))
	waitText(ctx, t, `[data-testid=progress]`, "3 of 3 resumed runs completed")
	screenshot(ctx, t, "batch-done")

	completed := 0
	for _, r := range runs {
		got := c.WaitRun(t, r.ID, vocab.RunCompleted, vocab.RunWaitingHuman)
		if got.Status == vocab.RunCompleted {
			completed++
		}
	}
	require.Equal(t, 3, completed)

	// The two deselected items are back in the inbox as explicit, with a note.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/"), chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery)))
	var ids []string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll("[data-testid=inbox-row]")).map(r => r.dataset.id)`, &ids)))
	require.ElementsMatch(t, deselected, ids)
	require.Contains(t, text(ctx, t, `[data-testid=note]`), "Left out of a batch by reviewer@example.com")
	b, err := store.BatchGet(context.Background(), c.Pool, batchID)
	require.NoError(t, err)
	require.Equal(t, vocab.BatchDecided, b.Status)
}

func TestBatchAPIAndPages(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	batchID, _ := readyBatch(t, c)
	api := c.api(t, "reviewer@example.com")

	var list struct {
		Batches []store.Batch `json:"batches"`
	}
	require.Equal(t, 200, api.do("GET", "/batches?status=ready", nil, &list))
	require.Len(t, list.Batches, 1)
	require.Equal(t, 5, list.Batches[0].Pending)
	var e apiErr
	require.Equal(t, 400, api.do("GET", "/batches?status=soon", nil, &e))
	var detail struct {
		Items []store.Request `json:"items"`
	}
	require.Equal(t, 200, api.do("GET", "/batches/"+batchID, nil, &detail))
	require.Len(t, detail.Items, 5)
	items := []map[string]string{}
	for _, it := range detail.Items[:4] {
		items = append(items, map[string]string{"id": it.ID, "payload_hash": it.PayloadHash})
	}
	require.Equal(t, 422, api.do("POST", "/batches/"+batchID+"/decision", map[string]any{"verdict": "reject_all", "items": items}, &e))
	require.Contains(t, e.Error.Message, "reason")
	var res workflow.BatchResult
	require.Equal(t, 200, api.do("POST", "/batches/"+batchID+"/decision", map[string]any{"verdict": "approve", "items": items}, &res))
	require.Equal(t, 4, res.Approved, `"approve" approves exactly the items listed`)
	require.Equal(t, 200, api.do("POST", "/batches/"+batchID+"/decision", map[string]any{"verdict": "approve_selected", "items": items}, &res))
	require.Zero(t, res.Approved)
	require.Len(t, res.Refused, 4, "already decided, reported per item")

	hc := c.client(t, "viewer@example.com")
	doc, _ := c.get(t, hc, "/batches/"+batchID)
	require.Equal(t, 1, doc.Find(`[data-testid=batch-item]`).Length(), "the fifth is still pending")
	require.Zero(t, doc.Find(`[data-testid=approve-selected]`).Length(), "viewers cannot decide")
	doc, _ = c.get(t, hc, "/auto")
	require.Zero(t, doc.Find(`[data-testid=auto-row]`).Length())
	_, err := policystore.Apply(context.Background(), c.Pool, policyExample(), "setup")
	require.NoError(t, err)
	c.App.Policies.Invalidate()
	c.startRunAny(t, "lead_enrichment", "auto-1", demo.Lead{ID: "L", Company: "Umbrella", Email: "x@umbrella.example", Employees: 4000, Industry: "Healthcare"})
	doc, _ = c.get(t, hc, "/auto")
	require.Equal(t, 1, doc.Find(`[data-testid=auto-row]`).Length(), "what the policy let through")
	require.Contains(t, doc.Find(`[data-testid=auto-row]`).Text(), "read-only")
}
