package web_test

import (
	"bufio"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// inboxRow finds the inbox row of a request.
func inboxRow(t *testing.T, doc *goquery.Document, id string) *goquery.Selection {
	t.Helper()
	row := doc.Find(`[data-testid=inbox-row][data-id="` + id + `"]`)
	require.Equal(t, 1, row.Length(), "row of %s", id)
	return row
}

// noRedirect is a copy of hc that returns redirects instead of following them.
func noRedirect(hc *http.Client) *http.Client {
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func TestInboxRows(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	refund := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{Action: &workflow.Action{Kind: "payments.refund",
		Summary: "Refund order 1042", Params: map[string]any{"amount": 842.0, "currency": "EUR"}, Risk: "high", Reversible: false}})
	tag := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{Action: &workflow.Action{Kind: "crm.tag",
		Summary: "Tag a lead", Params: map[string]any{"tag": "warm"}, Risk: "low", Reversible: true, EstimatedCost: 0.25}})
	approversOnly := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{Roles: []vocab.Role{vocab.RoleApprover}})
	ownRun := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{Run: factory.Run(ctx, t, c.Pool,
		&factory.RunOpts{StartedBy: factory.Ptr("reviewer@example.com"), Status: factory.Ptr(vocab.RunWaitingHuman)})})
	voted := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{ApprovalsRequired: factory.Ptr(2)})
	_, err := store.VoteAdd(ctx, c.Pool, voted.ID, "reviewer@example.com", "")
	require.NoError(t, err)

	doc, status := c.get(t, c.client(t, "reviewer@example.com"), "/")
	require.Equal(t, http.StatusOK, status)

	t.Run("RiskReversibilityAmount", func(t *testing.T) {
		row := inboxRow(t, doc, refund.ID)
		require.Equal(t, "high risk", row.Find("[data-testid=row-risk]").Text(), "in words")
		require.True(t, row.Find("[data-testid=row-risk]").HasClass("risk-high"), "and in colour")
		require.Equal(t, "irreversible", row.Find("[data-testid=row-reversible]").Text())
		require.True(t, row.Find("[data-testid=row-reversible]").HasClass("irreversible"))
		require.Equal(t, "842.00 EUR", row.Find("[data-testid=row-amount]").Text(), "amount with currency and decimals")

		row = inboxRow(t, doc, tag.ID)
		require.Equal(t, "low risk", row.Find("[data-testid=row-risk]").Text())
		require.Equal(t, "reversible", row.Find("[data-testid=row-reversible]").Text())
		require.Contains(t, row.Find("[data-testid=row-amount]").Text(), "cost 0.25")
	})

	t.Run("WhyNot", func(t *testing.T) {
		for _, c := range []struct {
			id, short, long string
		}{
			{approversOnly.ID, "not your role", "needs one of the roles approver"},
			{ownRun.ID, "your run", "You started this run"},
			{voted.ID, "you approved", "already approved"},
		} {
			row := inboxRow(t, doc, c.id)
			require.Contains(t, row.Find("[data-testid=why-not]").Text(), c.short)
			why, _ := row.Attr("data-why-not")
			require.Contains(t, why, c.long, "the `a` key shows this")
			require.Zero(t, row.Find("[data-testid=claim]").Length(), "nothing to claim for someone who cannot decide")
		}
		row := inboxRow(t, doc, refund.ID)
		require.Zero(t, row.Find("[data-testid=why-not]").Length())
		why, _ := row.Attr("data-why-not")
		require.Empty(t, why)
	})

	t.Run("ICanDecide", func(t *testing.T) {
		doc, status := c.get(t, c.client(t, "reviewer@example.com"), "/?can=1")
		require.Equal(t, http.StatusOK, status)
		var ids []string
		doc.Find("[data-testid=inbox-row]").Each(func(_ int, s *goquery.Selection) { ids = append(ids, s.AttrOr("data-id", "")) })
		require.ElementsMatch(t, []string{refund.ID, tag.ID}, ids)
		require.Equal(t, "Explicit: 2", strings.TrimSpace(doc.Find("[data-testid=count-explicit]").Text()), "counts follow the filter")
		require.True(t, doc.Find("[data-testid=filter-can]").Is("[checked]"))
	})

	t.Run("ViewerSeesWhy", func(t *testing.T) {
		viewer := c.client(t, "viewer@example.com")
		doc, _ := c.get(t, viewer, "/")
		require.Contains(t, inboxRow(t, doc, refund.ID).Find("[data-testid=why-not]").Text(), "view only")
		doc, _ = c.get(t, viewer, "/?can=1")
		require.Zero(t, doc.Find("[data-testid=inbox-row]").Length(), "a viewer can decide nothing")
	})
}

func TestInboxFilteredEmptyState(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	for range 3 {
		factory.Request(ctx, t, c.Pool, &factory.RequestOpts{Tier: factory.Ptr(vocab.TierBatched)})
	}
	hc := c.client(t, "reviewer@example.com")

	doc, status := c.get(t, hc, "/?tier=explicit")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "3", strings.TrimSpace(doc.Find("[data-testid=hidden-count]").Text()))
	require.Contains(t, doc.Find("[data-testid=inbox-empty]").Text(), "hidden by them")
	require.Equal(t, "/", doc.Find("[data-testid=empty-clear-filters]").AttrOr("href", ""))
	require.Equal(t, "Explicit: 0", strings.TrimSpace(doc.Find("[data-testid=count-explicit]").Text()))
	require.Equal(t, "Batched: 0", strings.TrimSpace(doc.Find("[data-testid=count-batched]").Text()), "the tier filter hides the other tier")

	// The live refresh renders the same counts and empty state.
	doc, status = c.get(t, hc, "/inbox/rows?tier=explicit")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "3", strings.TrimSpace(doc.Find("[data-testid=hidden-count]").Text()))

	doc, _ = c.get(t, hc, "/")
	require.Equal(t, "Batched: 3", strings.TrimSpace(doc.Find("[data-testid=count-batched]").Text()))
	require.NotContains(t, doc.Find("[data-testid=inbox-empty]").Text(), "hidden")
}

func TestInboxBadFilters(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	hc := c.client(t, "reviewer@example.com")
	for _, q := range []string{"tier=auto", "tier=%27", "age=-1h", "age=soon", "can=yes", "claimed=bob",
		"workflow=" + strings.Repeat("w", 201), "rule=" + strings.Repeat("r", 201), "after=nonsense", "after=e30"} {
		for _, path := range []string{"/?", "/inbox/rows?"} {
			resp, err := hc.Get(c.Addr + path + q)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s%s", path, q)
		}
	}
	// Unknown names filter to nothing rather than fail.
	doc, status := c.get(t, hc, "/?workflow=nope&rule=%E2%80%AEx&claimed=me&can=1&age=1h")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 1, doc.Find("[data-testid=inbox-empty]").Length())
}

func TestInboxClaims(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	req := factory.Request(ctx, t, c.Pool, nil)
	other := factory.Request(ctx, t, c.Pool, nil)
	ann := c.client(t, "reviewer@example.com")
	bob := c.client(t, "approver@example.com")

	t.Run("NeedsCSRF", func(t *testing.T) {
		resp, err := ann.PostForm(c.Addr+"/requests/"+req.ID+"/claim", url.Values{})
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	})

	resp, _ := c.post(t, noRedirect(ann), "/", "/requests/"+req.ID+"/claim", url.Values{"back": {"/?tier=explicit"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/?tier=explicit", resp.Header.Get("Location"), "back to the filtered inbox")

	t.Run("OthersSeeWhoAndWhen", func(t *testing.T) {
		doc, _ := c.get(t, bob, "/")
		claimed := inboxRow(t, doc, req.ID).Find("[data-testid=claimed-by]")
		require.Contains(t, claimed.Text(), "reviewer@example.com")
		require.Contains(t, claimed.Text(), "since")
		require.Contains(t, claimed.AttrOr("title", ""), "Claimed 20")
		require.Zero(t, inboxRow(t, doc, req.ID).Find("[data-testid=claim]").Length())
		// A second claim leaves it with its holder.
		c.post(t, bob, "/", "/requests/"+req.ID+"/claim", url.Values{})
		doc, _ = c.get(t, bob, "/")
		require.Contains(t, inboxRow(t, doc, req.ID).Find("[data-testid=claimed-by]").Text(), "reviewer@example.com")
	})

	t.Run("ClaimedByMe", func(t *testing.T) {
		doc, _ := c.get(t, ann, "/?claimed=me")
		require.Equal(t, 1, doc.Find("[data-testid=inbox-row]").Length())
		require.Contains(t, inboxRow(t, doc, req.ID).Find("[data-testid=claimed-by]").Text(), "you")
		_ = other
	})

	t.Run("Renew", func(t *testing.T) {
		token := c.csrf(t, ann, "/")
		r, _ := http.NewRequest(http.MethodPost, c.Addr+"/requests/"+req.ID+"/claim/renew", nil)
		r.Header.Set("X-CSRF-Token", token)
		resp, err := ann.Do(r)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)

		r, _ = http.NewRequest(http.MethodPost, c.Addr+"/requests/"+other.ID+"/claim/renew", nil)
		r.Header.Set("X-CSRF-Token", token)
		resp, err = ann.Do(r)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "no claim to renew")
	})

	t.Run("NeverBlocksADecision", func(t *testing.T) {
		resp, body := c.post(t, noRedirect(bob), "/requests/"+req.ID, "/requests/"+req.ID+"/decision",
			url.Values{"verdict": {string(vocab.VerdictApprove)}, "payload_hash": {req.PayloadHash}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, body)
	})

	t.Run("ViewerCannotClaim", func(t *testing.T) {
		resp, _ := c.post(t, c.client(t, "viewer@example.com"), "/", "/requests/"+other.ID+"/claim", url.Values{})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	})

	t.Run("Release", func(t *testing.T) {
		c.post(t, ann, "/", "/requests/"+other.ID+"/claim", url.Values{})
		resp, _ := c.post(t, noRedirect(ann), "/", "/requests/"+other.ID+"/unclaim", url.Values{"back": {"//evil.example/"}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "/", resp.Header.Get("Location"), "back goes only to the inbox")
		doc, _ := c.get(t, ann, "/")
		require.Zero(t, inboxRow(t, doc, other.ID).Find("[data-testid=claimed-by]").Length())
	})
}

func TestInboxSavedFilters(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ann := c.client(t, "reviewer@example.com")

	resp, _ := c.post(t, noRedirect(ann), "/", "/inbox/filters", url.Values{"name": {"Mine to do"}, "query": {"can=1&tier=explicit&junk=x"}})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/?tier=explicit&can=1", resp.Header.Get("Location"), "saved in canonical form, unknown keys dropped")

	doc, _ := c.get(t, ann, "/")
	saved := doc.Find("[data-testid=saved-filter]")
	require.Equal(t, 1, saved.Length())
	require.Equal(t, "Mine to do", saved.Find("a").Text())
	require.Equal(t, "/?tier=explicit&can=1", saved.Find("a").AttrOr("href", ""))

	other, _ := c.get(t, c.client(t, "approver@example.com"), "/")
	require.Zero(t, other.Find("[data-testid=saved-filter]").Length(), "per user")

	for _, form := range []url.Values{
		{"name": {""}, "query": {"tier=explicit"}},
		{"name": {strings.Repeat("n", 61)}, "query": {"tier=explicit"}},
		{"name": {"bad"}, "query": {"tier=auto"}},
		{"name": {"nothing"}, "query": {""}},
	} {
		resp, _ := c.post(t, ann, "/", "/inbox/filters", form)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%v", form)
	}

	action := saved.Find("form").AttrOr("action", "")
	resp, _ = c.post(t, c.client(t, "approver@example.com"), "/", action, url.Values{})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "another user's filter")
	resp, _ = c.post(t, noRedirect(ann), "/", action, url.Values{})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	doc, _ = c.get(t, ann, "/")
	require.Zero(t, doc.Find("[data-testid=saved-filter]").Length())
}

// TestInboxClaimRefreshesOthers checks that a claim reaches other reviewers'
// open inboxes: their event stream says "inbox", which refetches the rows.
func TestInboxClaimRefreshesOthers(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	req := factory.Request(context.Background(), t, c.Pool, nil)
	bob := c.client(t, "approver@example.com")
	resp, err := bob.Get(c.Addr + "/events")
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- e
			}
		}
		close(events)
	}()
	// The stream opens with "connected", and the listener's own connect may
	// send one "inbox" refresh; let those pass before claiming.
	require.Equal(t, "connected", <-events)
	drain := time.After(inboxSettle)
	for settled := false; !settled; {
		select {
		case <-events:
		case <-drain:
			settled = true
		}
	}

	r, _ := c.post(t, c.client(t, "reviewer@example.com"), "/", "/requests/"+req.ID+"/claim", url.Values{})
	require.Equal(t, http.StatusSeeOther, r.StatusCode, "back to the inbox")
	select {
	case e := <-events:
		require.Equal(t, "inbox", e)
	case <-time.After(5 * time.Second):
		t.Fatal("no inbox refresh after a claim")
	}
}

// inboxSettle outlasts the stream's inbox debounce (300 ms).
const inboxSettle = time.Second
