package web_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	cdpruntime "github.com/chromedp/cdproto/runtime"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
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
	require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=row-link]`),
		chromedp.WaitVisible(`[data-testid=review]`, chromedp.ByQuery)))
	screenshot(ctx, t, "review")
	require.Contains(t, text(ctx, t, `[data-testid=summary]`), req.Summary)
	require.Contains(t, text(ctx, t, `[data-testid=policy]`), "outbound-email")
	require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=approve]`),
		chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
	// The run finishes after the page loaded; its badge updates live.
	waitText(ctx, t, `#run-status`, "completed")
	screenshot(ctx, t, "approved")
	require.Equal(t, vocab.RunCompleted, c.WaitRun(t, run.ID, vocab.RunCompleted).Status)
	require.Contains(t, text(ctx, t, `[data-testid=decided]`), "Approved by reviewer@example.com")
	require.Contains(t, text(ctx, t, `[data-testid=flash]`), "Nothing else is waiting", "the only request: the page stays on it")
}

func TestBrowserRejectAndEdit(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := browser(t)
	c.signIn(ctx, t, "approver@example.com")

	t.Run("RejectNeedsAReason", func(t *testing.T) {
		run, req := c.startRun(t, "support_triage", "T-rej", demo.Ticket{ID: "T-rej", Customer: "bob@example.com",
			Subject: "Refund please", Body: "It arrived broken", OrderTotal: 80}, "api@example.com")
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+req.ID),
			clickOn(`details summary`),
			clickOn(`[data-testid=reject]`),
			chromedp.WaitVisible(`[data-testid=form-error]`, chromedp.ByQuery)))
		require.Contains(t, text(ctx, t, `[data-testid=form-error]`), "needs a reason")
		require.NoError(t, chromedp.Run(ctx,
			chromedp.SendKeys(`[data-testid=reason]`, "Order is outside the refund window", chromedp.ByQuery),
			clickOn(`[data-testid=reject]`),
			chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
		require.Contains(t, text(ctx, t, `[data-testid=flash]`), "Rejected")
		require.Contains(t, text(ctx, t, `[data-testid=what-happened]`), "Order is outside the refund window")
		require.Equal(t, vocab.RunRejected, c.WaitRun(t, run.ID, vocab.RunRejected).Status)
	})

	t.Run("EditAndApprove", func(t *testing.T) {
		run, req := c.startRun(t, "support_triage", "T-edit", demo.Ticket{ID: "T-edit", Customer: "ada@example.com",
			Subject: "How do I login?", Body: "password"}, "api@example.com")
		// e focuses the first typed field (the body); the subject is edited
		// like a person would, and the preview lists the change before submitting.
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+req.ID),
			chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery),
			chromedp.KeyEvent("e")))
		var focused string
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.activeElement.name`, &focused)))
		require.Equal(t, "param/body", focused, "e opens the edit form at its first field")
		require.NoError(t, chromedp.Run(ctx,
			chromedp.SendKeys(`input[name="param/subject"]`, " (updated)", chromedp.ByQuery),
			chromedp.WaitVisible(`[data-testid=preview-change]`, chromedp.ByQuery)))
		require.Contains(t, text(ctx, t, `[data-testid=preview-change]`), "/subject")
		require.Contains(t, text(ctx, t, `[data-testid=preview-change]`), "(updated)")
		require.Equal(t, 1, count(ctx, t, `[data-testid=preview-change]`), "the e that opened the form typed nothing")
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=edit-approve]`),
			chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
		require.Contains(t, text(ctx, t, `[data-testid=flash]`), "edits")
		c.WaitRun(t, run.ID, vocab.RunCompleted)
		d, err := store.DecisionGetByRequest(t.Context(), c.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.VerdictEdit, d.Verdict)
		require.Contains(t, string(d.EditedParams), "(updated)", "the edited parameters were applied")
		require.Contains(t, string(d.Diff), "subject")
	})
}

func TestBrowserKeyboard(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := browser(t)
	c.startRun(t, "support_triage", "T-k1", demo.Ticket{ID: "T-k1", Customer: "a@example.com", Subject: "How do I login?", Body: "password"}, "api@example.com")
	c.startRun(t, "support_triage", "T-k2", demo.Ticket{ID: "T-k2", Customer: "b@example.com", Subject: "How do I login?", Body: "password"}, "api@example.com")
	c.signIn(ctx, t, "reviewer@example.com")

	var help bool
	require.NoError(t, chromedp.Run(ctx,
		chromedp.KeyEvent("?"),
		chromedp.Evaluate(`document.getElementById("keys-help").open`, &help)))
	require.True(t, help, "? shows the keys")
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("\x1b")))

	var selected string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.KeyEvent("j"), chromedp.KeyEvent("j"), chromedp.KeyEvent("k"),
		chromedp.AttributeValue(`tr.selected`, "data-id", &selected, nil, chromedp.ByQuery)))
	rows := []string{}
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll("tr[data-testid=inbox-row]")).map(r => r.dataset.id)`, &rows)))
	require.Equal(t, rows[0], selected, "j, j, k lands on the first row")

	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("\r"), chromedp.WaitVisible(`[data-testid=review]`, chromedp.ByQuery)))
	// A reply cannot be unsent: a asks again before approving.
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("a"), chromedp.KeyEvent("a"), chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
	require.Contains(t, text(ctx, t, `[data-testid=flash]`), "Approved")
	approved, err := store.RequestGet(t.Context(), c.Pool, selected)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestApproved, approved.Status, "a approved the request Enter opened")
	require.Equal(t, "reviewer@example.com", *approved.DecidedBy)
	other := rows[1]
	pending, err := store.RequestGet(t.Context(), c.Pool, other)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestPending, pending.Status, "and nothing else")
}

// hostile is a workflow whose model output tries every trick.
func hostile(r *workflow.Registry, m *ai.Offline) {
	const payload = `<script>window.__pwned="script"</script><img src=x onerror="window.__pwned='img'">` +
		`<a href="javascript:window.__pwned='link'">click me</a><div hx-get="/trap" hx-trigger="load">hx</div>`
	workflow.Register(r, "hostile", func(ctx context.Context, _ struct{}) (string, error) {
		d, err := workflow.RequestApproval(ctx, workflow.Action{
			Kind: "email.send", Target: payload, Summary: "Hostile " + payload, Rationale: payload, Risk: payload,
			Params:  map[string]any{"body": payload, payload: "key"},
			Current: map[string]any{"body": "before"},
			Checks:  []workflow.Check{{Name: payload, Passed: false, Detail: payload}},
		})
		if err != nil {
			return "", err
		}
		return payload, workflow.Fail("hostile", payload+string(d.Verdict))
	})
}

func TestBrowserHostileOutputIsInert(t *testing.T) {
	t.Parallel()
	c := startConsole(t, hostile)
	ctx := browser(t)
	run, req := c.startRun(t, "hostile", "h-1", struct{}{}, "api@example.com")
	c.signIn(ctx, t, "reviewer@example.com")
	for _, page := range []string{"/", "/requests/" + req.ID, "/runs/" + run.ID, "/runs"} {
		var pwned bool
		var bad int
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+page), chromedp.Sleep(300*time.Millisecond),
			chromedp.Evaluate(`window.__pwned !== undefined`, &pwned),
			chromedp.Evaluate(`document.querySelectorAll('[onerror], a[href^="javascript"], [hx-get="/trap"], main script, main img').length`, &bad)))
		require.False(t, pwned, "script ran on %s", page)
		require.Zero(t, bad, "model output became markup on %s", page)
	}
	// The text itself is shown, escaped.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+req.ID), chromedp.WaitVisible(`[data-testid=summary]`, chromedp.ByQuery)))
	require.Contains(t, text(ctx, t, `[data-testid=summary]`), `<script>window.__pwned="script"</script>`)
	// Decide it, so the run's failure message (also model text) shows on the run page.
	require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=approve]`), chromedp.WaitVisible(`[data-testid=flash]`, chromedp.ByQuery)))
	c.WaitRun(t, run.ID, vocab.RunFailed)
	var pwned bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/runs/"+run.ID), chromedp.WaitVisible(`[data-testid=run-error]`, chromedp.ByQuery),
		chromedp.Sleep(300*time.Millisecond), chromedp.Evaluate(`window.__pwned !== undefined`, &pwned)))
	require.False(t, pwned)
}

func TestBrowserCrossSitePostAndLogout(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := browser(t)
	_, req := c.startRun(t, "support_triage", "T-x", demo.Ticket{ID: "T-x", Customer: "a@example.com", Subject: "How do I login?", Body: "password"}, "api@example.com")
	c.signIn(ctx, t, "reviewer@example.com")

	// An attacker's page on another site (localhost is not the same site as
	// 127.0.0.1) posts an approval to the console.
	target := c.Addr + "/requests/" + req.ID + "/decision"
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><form id="f" method="post" action="%s"><input name="verdict" value="approve">`+
			`<input name="payload_hash" value="%s"><input name="_csrf" value="guess"><button id="go">go</button></form>`, target, req.PayloadHash)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(evilURL), clickOn(`#go`)))
	waitText(ctx, t, "body", "403")
	got, err := store.RequestGet(t.Context(), c.Pool, req.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestPending, got.Status, "the cross-site POST decided nothing")

	// Logout ends the session: the console is behind the sign-in page again.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/"), clickOn(`[data-testid=logout]`),
		chromedp.WaitVisible(`[data-testid=login-form]`, chromedp.ByQuery),
		chromedp.Navigate(c.Addr+"/requests/"+req.ID), chromedp.WaitVisible(`[data-testid=login-form]`, chromedp.ByQuery)))
}

func TestBrowserInboxIsLive(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := browser(t)
	c.startRun(t, "support_triage", "T-live-1", demo.Ticket{ID: "1", Customer: "a@example.com", Subject: "How do I login?", Body: "password"}, "api@example.com")
	c.signIn(ctx, t, "reviewer@example.com")
	// Select the row and put the focus in the filter form: a live refresh
	// must keep both.
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("j"), chromedp.Focus(`select[name=tier]`, chromedp.ByQuery)))
	var marker bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`window.__noReload = true`, &marker)))

	c.startRun(t, "support_triage", "T-live-2", demo.Ticket{ID: "2", Customer: "b@example.com", Subject: "How do I login?", Body: "password"}, "api@example.com")
	deadline := time.Now().Add(15 * time.Second)
	var rows int
	for time.Now().Before(deadline) && rows < 2 {
		_ = chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll("[data-testid=inbox-row]").length`, &rows))
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, 2, rows, "the new request appeared")
	var still bool
	var focused string
	var selected int
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Evaluate(`window.__noReload === true`, &still),
		chromedp.Evaluate(`document.activeElement.name`, &focused),
		chromedp.Evaluate(`document.querySelectorAll("tr.selected").length`, &selected)))
	require.True(t, still, "without a reload")
	require.Equal(t, "tier", focused, "without stealing focus")
	require.Equal(t, 1, selected, "the keyboard selection survives the refresh")
}

// TestBrowserEveryPage opens every page as an admin and fails on a missing
// page element, a script error, or a Content-Security-Policy violation (which
// would mean the pages rely on something the policy forbids).
func TestBrowserEveryPage(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	batchID, runs := readyBatch(t, c)
	_, req := c.startRun(t, "support_triage", "T-pages", demo.Ticket{ID: "p", Customer: "a@example.com", Subject: "Refund please", Body: "broken", OrderTotal: 40}, "api@example.com")
	ctx := browser(t)
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.LevelError {
				problems = append(problems, "console: "+e.Entry.Text)
			}
		}
	})
	require.NoError(t, chromedp.Run(ctx, cdplog.Enable()))
	c.signIn(ctx, t, "admin@example.com")
	for path, testid := range map[string]string{
		"/": "inbox", "/requests/" + req.ID: "review", "/runs": "runs", "/runs/" + runs[0].ID: "run",
		"/batches": "batches", "/batches/" + batchID: "batch", "/auto": "auto", "/history": "history", "/policy": "versions",
		"/admin/tokens": "tokens", "/admin/deliveries": "delivery-filter",
	} {
		var htmx bool
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+path),
			chromedp.WaitVisible(`[data-testid=`+testid+`]`, chromedp.ByQuery),
			chromedp.Sleep(200*time.Millisecond),
			chromedp.Evaluate(`typeof window.htmx === "object"`, &htmx)), path)
		require.True(t, htmx, "htmx loaded under the CSP on %s", path)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, problems)
}
