package web_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// TestBrowserDecisionSwap: a decision taken with a key swaps the next
// request in without loading a page, and the page then reads as if it had
// been loaded: its address and title, the focus on the outcome, a held key
// that does not approve the request just shown, and the back button.
func TestBrowserDecisionSwap(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := browser(t)
	var reqs []*store.Request
	for _, summary := range []string{"First thing", "Second thing", "Third thing"} {
		reqs = append(reqs, factory.Request(t.Context(), t, c.Pool, &factory.RequestOpts{Action: &workflow.Action{
			Kind: "factory.act", Summary: summary, Params: map[string]any{"n": 1}, Risk: "low", Reversible: true}}))
	}
	a, b, third := reqs[0], reqs[1], reqs[2]
	status := func(id string) vocab.RequestStatus {
		r, err := store.RequestGet(t.Context(), c.Pool, id)
		require.NoError(t, err)
		return r.Status
	}
	c.signIn(ctx, t, "reviewer@example.com")
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(c.Addr+"/requests/"+a.ID),
		chromedp.WaitVisible(`[data-testid=review]`, chromedp.ByQuery)))
	var ok bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`window.csSamePage = true`, &ok)))

	// A double click, or a double a, on the first: its second half lands
	// on the next request, swapped in a moment before, and sends nothing.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.addEventListener("htmx:afterSwap", () => setTimeout(() => {
		document.getElementById("approve").click();
		document.dispatchEvent(new KeyboardEvent("keydown", { key: "a", bubbles: true }));
		sessionStorage.setItem("cs-early", "1") }, 50), { once: true }), true`, &ok)))
	keys(ctx, t, "a")
	evalTrue(t, ctx, `document.getElementById("review")?.dataset.request === `+quoteJS(b.ID), 20*time.Second, "the next request swapped in")
	evalTrue(t, ctx, `sessionStorage.getItem("cs-early") === "1"`, 5*time.Second, "the early click and key were tried")
	time.Sleep(1500 * time.Millisecond) // long enough for a sent decision to commit
	require.Equal(t, vocab.RequestPending, status(b.ID), "a click or key just after the swap approves nothing")
	var page struct {
		Same        bool
		Path, Title string
	}
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`({ Same: window.csSamePage === true, Path: location.pathname, Title: document.title })`, &page)))
	require.True(t, page.Same, "no page was loaded")
	require.Equal(t, "/requests/"+b.ID, page.Path, "the address is the next request's")
	require.Equal(t, "Second thing · Countersign", page.Title)
	require.Equal(t, "flash", active(ctx, t), "the focus is on the outcome")
	require.Contains(t, text(ctx, t, `[data-testid=flash]`), "Approved")
	require.Equal(t, vocab.RequestApproved, status(a.ID))
	require.Equal(t, vocab.RequestPending, status(b.ID))

	// A key held down from the last decision repeats: it must not approve
	// the request that has just appeared.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.dispatchEvent(new KeyboardEvent("keydown", { key: "a", repeat: true, bubbles: true })), true`, &ok)))
	time.Sleep(600 * time.Millisecond)
	require.Equal(t, vocab.RequestPending, status(b.ID), "a repeated key approves nothing")

	keys(ctx, t, "a")
	evalTrue(t, ctx, `document.getElementById("review")?.dataset.request === `+quoteJS(third.ID), 20*time.Second, "the third swapped in")
	require.Equal(t, vocab.RequestApproved, status(b.ID))
	// Back loads the previous address as a page (htmx keeps no snapshot of
	// pages in localStorage), which shows it decided.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`history.back(), true`, &ok)))
	evalTrue(t, ctx, `location.pathname === `+quoteJS("/requests/"+b.ID)+` && window.csSamePage !== true && document.readyState === "complete"`,
		20*time.Second, "back reloads the second request's page")
	require.Contains(t, text(ctx, t, `[data-testid=decided]`), "Approved by reviewer@example.com")
	var cached bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`localStorage.getItem("htmx-history-cache") !== null`, &cached)))
	require.False(t, cached, "no page is kept in localStorage")
}

func quoteJS(s string) string { return `"` + s + `"` }
