package web_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// active describes the focused element: its data-testid, or its tag and id.
const activeJS = `(() => { const a = document.activeElement; if (!a) return "none";
	return a.getAttribute("data-testid") || (a.tagName.toLowerCase() + (a.id ? "#" + a.id : "")); })()`

func active(ctx context.Context, t *testing.T) string {
	t.Helper()
	var s string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(activeJS, &s)))
	return s
}

// focusedRow is the data-id of the inbox row that holds the focus, "" if none.
func focusedRow(ctx context.Context, t *testing.T) string {
	t.Helper()
	var s string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(
		`document.activeElement?.closest("tr[data-testid=inbox-row]")?.dataset.id || ""`, &s)))
	return s
}

func keys(ctx context.Context, t *testing.T, ks ...string) {
	t.Helper()
	for _, k := range ks {
		require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent(k)))
	}
}

// TestBrowserKeyboardAccess checks what checkers cannot see: roving focus in
// the inbox that survives a live refresh, Enter that belongs to the focused
// control, shortcuts that can be switched off, the focus moved to the outcome
// of an action, a skip link, one current navigation link, a named help
// dialog, named batch checkboxes and a visible focus ring.
func TestBrowserKeyboardAccess(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	batchID, _ := readyBatch(t, c)
	email := func(key string) *store.Request {
		_, req := c.startRun(t, "support_triage", key, demo.Ticket{ID: key, Customer: key + "@example.com",
			Subject: "How do I login?", Body: "password"}, "api@example.com")
		return req
	}
	r1, r2 := email("K-1"), email("K-2")
	ctx := browser(t)
	c.signIn(ctx, t, "approver@example.com")

	t.Run("SkipLinkAndCurrentNav", func(t *testing.T) {
		keys(ctx, t, "\t")
		require.Equal(t, "skip-link", active(ctx, t), "the first Tab reaches the skip link")
		keys(ctx, t, "\r")
		evalUntil(ctx, t, `document.activeElement.id === "main"`, "Enter on the skip link moves the focus to the content")
		var current []string
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(
			`[...document.querySelectorAll(".topbar [aria-current]")].map(a => a.dataset.testid + "=" + a.getAttribute("aria-current"))`, &current)))
		require.Equal(t, []string{"nav-inbox=page"}, current, "only the current page's link is marked")
	})

	t.Run("HelpDialogHasAName", func(t *testing.T) {
		var name string
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(
			`document.getElementById(document.getElementById("keys-help").getAttribute("aria-labelledby")).textContent`, &name)))
		require.Equal(t, "Keyboard shortcuts", name)
	})

	t.Run("FocusRing", func(t *testing.T) {
		// Tab to the brand link: :focus-visible applies as it would for a person.
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/"), chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery)))
		keys(ctx, t, "\t", "\t")
		var ring struct {
			Color    string
			Width    float64
			Contrast float64
		}
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => {
			const s = getComputedStyle(document.activeElement);
			const [r, g, b] = s.outlineColor.match(/\d+(\.\d+)?/g).map(Number);
			const lin = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
			const L = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
			return { Color: s.outlineColor, Width: parseFloat(s.outlineWidth), Contrast: 1.05 / (L + 0.05) };
		})()`, &ring)))
		t.Logf("focus ring: %s, %.0f px, %.2f:1 on white", ring.Color, ring.Width, ring.Contrast)
		require.GreaterOrEqual(t, ring.Width, 2.0)
		require.GreaterOrEqual(t, ring.Contrast, 3.0)
	})

	var rows []string
	t.Run("RovingFocusSurvivesLiveRefresh", func(t *testing.T) {
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/"), chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery),
			chromedp.Evaluate(`[...document.querySelectorAll("tr[data-testid=inbox-row]")].map(r => r.dataset.id)`, &rows)))
		require.GreaterOrEqual(t, len(rows), 2)
		keys(ctx, t, "j")
		require.Equal(t, "row-link", active(ctx, t), "j moves the real focus to the row's link")
		require.Equal(t, rows[0], focusedRow(ctx, t))
		keys(ctx, t, "j")
		require.Equal(t, rows[1], focusedRow(ctx, t))
		var selected string
		require.NoError(t, chromedp.Run(ctx, chromedp.AttributeValue(`tr[data-id="`+rows[1]+`"]`, "aria-selected", &selected, nil, chromedp.ByQuery)))
		require.Equal(t, "true", selected)

		// A new request arrives: the table is replaced, the focus stays on the row.
		var marker bool
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`window.__noReload = true`, &marker)))
		factory.Request(t.Context(), t, c.Pool, &factory.RequestOpts{Action: &workflow.Action{Kind: "crm.update", Summary: "Arrives while focused"}})
		require.NoError(t, notify.Send(t.Context(), c.Pool, notify.Message{Type: notify.KindRequest}))
		evalUntil(ctx, t, fmt.Sprintf(`document.querySelectorAll("tr[data-testid=inbox-row]").length === %d`, len(rows)+1), "the new row appeared")
		require.Equal(t, "row-link", active(ctx, t), "the focus is not thrown to the body")
		require.Equal(t, rows[1], focusedRow(ctx, t), "the same row, by id")
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`window.__noReload === true`, &marker)))
		require.True(t, marker, "without a reload")
		keys(ctx, t, "k")
		require.Equal(t, rows[0], focusedRow(ctx, t), "k goes on from there")

		if _, err := os.Stat(filepath.Join("testdata", "axe", "node_modules", "axe-core", "axe.min.js")); err == nil {
			require.Empty(t, axeRunFailing(ctx, t, axeSource(t)), "a selected row is valid markup")
		}
	})

	t.Run("EnterBelongsToTheFocusedControl", func(t *testing.T) {
		// A row is selected; the focus is then put on a navigation link.
		require.Equal(t, rows[0], focusedRow(ctx, t))
		require.NoError(t, chromedp.Run(ctx, chromedp.Focus(`[data-testid=nav-history]`, chromedp.ByQuery)))
		keys(ctx, t, "\r")
		waitLocation(ctx, t, "/history")
		// And a button: Enter on the filter bar's checkbox label does not open a request either.
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/"), chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery)))
		keys(ctx, t, "j")
		require.NoError(t, chromedp.Run(ctx, chromedp.Focus(`[data-testid=open-keys-help]`, chromedp.ByQuery)))
		keys(ctx, t, "\r")
		evalUntil(ctx, t, `document.getElementById("keys-help").open`, "Enter on the help button opens the help")
		keys(ctx, t, "\x1b")
		var loc string
		require.NoError(t, chromedp.Run(ctx, chromedp.Location(&loc)))
		require.NotContains(t, loc, "/requests/")
	})

	t.Run("ShortcutsCanBeSwitchedOff", func(t *testing.T) {
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/"), chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery),
			clickOn(`[data-testid=open-keys-help]`), clickOn(`[data-testid=keys-enabled]`)))
		var stored string
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`localStorage.getItem("countersign-keys") || ""`, &stored)))
		require.Equal(t, "off", stored)
		keys(ctx, t, "\x1b")
		// Honoured on every page: the inbox ignores j, the review page a.
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/"), chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery)))
		keys(ctx, t, "j", "?")
		time.Sleep(200 * time.Millisecond)
		require.Equal(t, "", focusedRow(ctx, t), "j does nothing")
		var open bool
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById("keys-help").open`, &open)))
		require.False(t, open, "? does nothing")
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+r1.ID), chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery)))
		keys(ctx, t, "a", "a")
		time.Sleep(500 * time.Millisecond)
		got, err := store.RequestGet(t.Context(), c.Pool, r1.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestPending, got.Status, "a approves nothing with shortcuts off")
		var checked bool
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=open-keys-help]`),
			chromedp.Evaluate(`document.getElementById("keys-enabled").checked`, &checked)))
		require.False(t, checked, "the setting shows what is in force")
		require.NoError(t, chromedp.Run(ctx, clickOn(`[data-testid=keys-enabled]`)))
		keys(ctx, t, "\x1b")
	})

	t.Run("FocusMovesToTheOutcome", func(t *testing.T) {
		// A refused rejection (no reason) focuses the reason, at its field.
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+r1.ID),
			clickOn(`details summary`), clickOn(`[data-testid=reject]`),
			chromedp.WaitVisible(`[data-testid=form-error]`, chromedp.ByQuery)))
		evalUntil(ctx, t, `document.activeElement.dataset.testid === "reason"`, "the refused form focuses the field it refused")
		// A decision: the next request opens with the outcome focused.
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+r1.ID),
			chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery), clickOn(`[data-testid=approve]`)))
		waitLocation(ctx, t, "/requests/"+r2.ID)
		evalUntil(ctx, t, `!!document.activeElement.closest("[data-testid=flash]")`, "the decision's toast has the focus")
		require.Contains(t, text(ctx, t, `[data-testid=flash]`), "Approved")
		// A simulation: its result.
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/policy"), clickOn(`[data-testid=simulate]`),
			chromedp.WaitVisible(`[data-testid=simulation]`, chromedp.ByQuery)))
		evalUntil(ctx, t, `!!document.activeElement.closest("[data-testid=simulation]")`, "the simulation's result has the focus")
	})

	t.Run("BatchCheckboxesAreNamedByTheirItem", func(t *testing.T) {
		var names []string
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/batches/"+batchID), chromedp.WaitVisible(`[data-testid=batch]`, chromedp.ByQuery),
			chromedp.Evaluate(`[...document.querySelectorAll("[data-testid=select]")].map(e => e.getAttribute("aria-label") ||
				(e.getAttribute("aria-labelledby") || "").split(" ").map(id => (document.getElementById(id) || {}).textContent || "").join(" ").trim())`, &names)))
		require.Len(t, names, 5)
		seen := map[string]bool{}
		for _, n := range names {
			require.NotContains(t, n, "this item")
			require.Greater(t, len(n), len("Approve: "))
			require.True(t, strings.HasPrefix(n, "Approve"), n)
			seen[n] = true
		}
		require.Len(t, seen, 5, "each checkbox says which item it approves: %v", names)
	})
}

// axeRunFailing is axeRun without the AAA-only rules.
func axeRunFailing(ctx context.Context, t *testing.T, src string) []string {
	t.Helper()
	var out []string
	for _, v := range axeRun(ctx, t, src) {
		if !v.aaaOnly() {
			out = append(out, v.String())
		}
	}
	return out
}

// TestBrowserKeyboardWalk is a reviewer's walk with the keyboard alone: sign
// in, open the first request from the inbox, approve it (a reply asks for a
// second a), land on the next one, approve it too.
func TestBrowserKeyboardWalk(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	var reqs []*store.Request
	for _, key := range []string{"W-1", "W-2"} {
		_, r := c.startRun(t, "support_triage", key, demo.Ticket{ID: key, Customer: key + "@example.com",
			Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
		reqs = append(reqs, r)
	}
	ctx := browser(t)
	pressed := 0
	press := func(ks ...string) {
		t.Helper()
		pressed += len(ks)
		keys(ctx, t, ks...)
	}
	// The email field has the focus when the page opens.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/login"), chromedp.WaitVisible(`[data-testid=login-form]`, chromedp.ByQuery)))
	require.Equal(t, "email", active(ctx, t))
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("reviewer@example.com")))
	press("\t")
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent(password)))
	press("\r")
	require.NoError(t, chromedp.Run(ctx, chromedp.WaitVisible(`[data-testid=inbox]`, chromedp.ByQuery)))

	typed := pressed
	press("j")
	require.Equal(t, reqs[0].ID, focusedRow(ctx, t), "j focuses the oldest request")
	press("\r")
	waitLocation(ctx, t, "/requests/"+reqs[0].ID)
	require.NoError(t, chromedp.Run(ctx, chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery)))
	press("a", "a")
	waitLocation(ctx, t, "/requests/"+reqs[1].ID)
	evalUntil(ctx, t, `!!document.activeElement.closest("[data-testid=flash]")`, "the toast has the focus")
	require.NoError(t, chromedp.Run(ctx, chromedp.WaitVisible(`[data-testid=decision-form]`, chromedp.ByQuery)))
	// The reviewer reads it: a key within half a second of its arrival is
	// taken for the previous request's (static/app.js, DWELL).
	time.Sleep(550 * time.Millisecond)
	press("a", "a")
	waitText(ctx, t, `[data-testid=flash]`, "Nothing else is waiting")
	for _, r := range reqs {
		got, err := store.RequestGet(t.Context(), c.Pool, r.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestApproved, got.Status)
		require.Equal(t, "reviewer@example.com", *got.DecidedBy)
	}
	t.Logf("two irreversible approvals from the inbox in %d keystrokes (plus %d to sign in, besides typing)", pressed-typed, typed)
}
