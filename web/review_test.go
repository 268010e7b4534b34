package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// TestReviewPage covers the review page's server side: going on after a
// decision, decided requests, typed edits and their errors, multi-approval
// and the live "decided elsewhere" notice. Subtests share one console and
// run in order, since the inbox order is what they check.
func TestReviewPage(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	reviewer := c.client(t, "reviewer@example.com")
	// post without following the redirect of a decision that was taken.
	decide := func(t *testing.T, id string, form url.Values) *http.Response {
		t.Helper()
		form.Set("_csrf", c.csrf(t, reviewer, "/requests/"+id))
		resp, err := reviewer.PostForm(c.Addr+"/requests/"+id+"/decision", form)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}

	t.Run("AutoAdvance", func(t *testing.T) {
		a := factory.Request(ctx, t, c.Pool, nil)
		b := factory.Request(ctx, t, c.Pool, nil)
		doc, _ := c.get(t, reviewer, "/requests/"+a.ID)
		require.Equal(t, "/requests/"+b.ID, doc.Find(`[data-testid=review]`).AttrOr("data-next", ""), "j goes to the next in the inbox order")
		doc, _ = c.get(t, reviewer, "/requests/"+b.ID)
		require.Equal(t, "/requests/"+a.ID, doc.Find(`[data-testid=review]`).AttrOr("data-prev", ""), "k goes back")

		resp := decide(t, a.ID, url.Values{"verdict": {"approve"}, "payload_hash": {a.PayloadHash}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		loc := resp.Header.Get("Location")
		require.True(t, strings.HasPrefix(loc, "/requests/"+b.ID+"?"), "the next item: %s", loc)
		doc, status := c.get(t, reviewer, loc)
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, doc.Find(`[data-testid=flash]`).Text(), "Approved")
		require.Equal(t, "/requests/"+a.ID, doc.Find(`[data-testid=toast-link]`).AttrOr("href", ""), "the toast links to what was decided")

		resp = decide(t, b.ID, url.Values{"verdict": {"approve"}, "payload_hash": {b.PayloadHash}})
		loc = resp.Header.Get("Location")
		require.Equal(t, "/requests/"+b.ID+"?done=approve", loc, "nothing is next: stay on the decided request")
		doc, _ = c.get(t, reviewer, loc)
		require.Contains(t, doc.Find(`[data-testid=flash]`).Text(), "Nothing else is waiting")
	})

	// The review page's form posts through htmx: a decision answers with the
	// next request's review (the "title" and "review" fragments) to swap in,
	// in one round trip; a refusal still goes to the refused form's page.
	t.Run("SwapAnswersWithTheNext", func(t *testing.T) {
		a := factory.Request(ctx, t, c.Pool, nil)
		b := factory.Request(ctx, t, c.Pool, nil)
		hx := func(t *testing.T, id string, form url.Values, token bool) (*http.Response, *goquery.Document) {
			t.Helper()
			if token {
				form.Set("_csrf", c.csrf(t, reviewer, "/requests/"+id))
			}
			r, err := http.NewRequest(http.MethodPost, c.Addr+"/requests/"+id+"/decision", strings.NewReader(form.Encode()))
			require.NoError(t, err)
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("HX-Request", "true")
			r.Header.Set("HX-Current-URL", c.Addr+"/requests/"+id)
			resp, err := reviewer.Do(r)
			require.NoError(t, err)
			defer resp.Body.Close()
			doc, err := goquery.NewDocumentFromReader(resp.Body)
			require.NoError(t, err)
			return resp, doc
		}

		resp, _ := hx(t, a.ID, url.Values{"verdict": {"approve"}, "payload_hash": {a.PayloadHash}}, false)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "no CSRF token, no decision")
		got, err := store.RequestGet(ctx, c.Pool, a.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestPending, got.Status)

		resp, doc := hx(t, a.ID, url.Values{"verdict": {"approve"}, "payload_hash": {strings.Repeat("0", len(a.PayloadHash))}}, true)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.True(t, strings.HasPrefix(resp.Header.Get("HX-Redirect"), "/requests/"+a.ID+"?refused="),
			"a payload hash of another payload is refused, on the form's own page: %s", resp.Header.Get("HX-Redirect"))
		require.Zero(t, doc.Find(`[data-testid=review]`).Length(), "nothing to swap")
		got, err = store.RequestGet(ctx, c.Pool, a.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestPending, got.Status, "the hash binds the decision to what was shown")

		resp, doc = hx(t, a.ID, url.Values{"verdict": {"approve"}, "payload_hash": {a.PayloadHash}}, true)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.True(t, strings.HasPrefix(resp.Header.Get("HX-Push-Url"), "/requests/"+b.ID+"?"), "the address of the next: %s", resp.Header.Get("HX-Push-Url"))
		timing := resp.Header.Get("Server-Timing")
		for _, phase := range []string{"auth;dur=", "inbox;dur=", "decide;dur=", "load;dur=", "render;dur=", "total;dur="} {
			require.Contains(t, timing, phase)
		}
		require.Equal(t, b.Summary+" · Countersign", doc.Find(`title`).Text(), "the page is renamed")
		review := doc.Find(`article#review[data-testid=review]`)
		require.Equal(t, b.ID, review.AttrOr("data-request", ""), "the next request, swapped in")
		require.Zero(t, doc.Find(`header.topbar, dialog, .review-live`).Length(), "the review alone, not the page around it")
		require.Contains(t, doc.Find(`[data-testid=flash]`).Text(), "Approved")
		require.Equal(t, "/requests/"+a.ID, doc.Find(`[data-testid=toast-link]`).AttrOr("href", ""))
		form := doc.Find(`form[data-testid=decision-form]`)
		require.Equal(t, "/requests/"+b.ID+"/decision", form.AttrOr("hx-post", ""))
		require.NotEmpty(t, form.Find(`input[name=_csrf]`).AttrOr("value", ""), "the plain form keeps its token")
		require.Equal(t, b.PayloadHash, form.Find(`input[name=payload_hash]`).AttrOr("value", ""))
		require.True(t, strings.HasPrefix(doc.Find(`#live-state`).AttrOr("hx-trigger", ""), "load, sse:run-"),
			"the stream is already open: the state is checked on arrival")
		got, err = store.RequestGet(ctx, c.Pool, a.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestApproved, got.Status)

		resp, doc = hx(t, b.ID, url.Values{"verdict": {"approve"}, "payload_hash": {b.PayloadHash}}, true)
		require.Equal(t, "/requests/"+b.ID+"?done=approve", resp.Header.Get("HX-Push-Url"), "nothing is next: stay on the decided request")
		require.Equal(t, b.ID, doc.Find(`[data-testid=review]`).AttrOr("data-request", ""))
		require.Contains(t, doc.Find(`[data-testid=flash]`).Text(), "Nothing else is waiting")
		require.Contains(t, doc.Find(`[data-testid=decided]`).Text(), "Approved by reviewer@example.com")
	})

	t.Run("AdvancePassesOverWhatICannotDecide", func(t *testing.T) {
		a := factory.Request(ctx, t, c.Pool, nil)
		mine := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{Run: factory.Run(ctx, t, c.Pool, &factory.RunOpts{
			Status: factory.Ptr(vocab.RunWaitingHuman), StartedBy: factory.Ptr("reviewer@example.com")})})
		admins := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{Roles: []vocab.Role{vocab.RoleAdmin}})
		b := factory.Request(ctx, t, c.Pool, nil)
		resp := decide(t, a.ID, url.Values{"verdict": {"approve"}, "payload_hash": {a.PayloadHash}})
		require.True(t, strings.HasPrefix(resp.Header.Get("Location"), "/requests/"+b.ID+"?"),
			"past my own run's request and an admins-only one: %s", resp.Header.Get("Location"))
		for _, r := range []*store.Request{mine, admins, b} {
			_, err := c.Engine.Decide(ctx, workflow.DecideParams{RequestID: r.ID, Actor: workflow.Actor{Name: "admin@example.com",
				Roles: []vocab.Role{vocab.RoleAdmin}}, Verdict: vocab.VerdictReject, Reason: "tidy up", PayloadHash: r.PayloadHash})
			require.NoError(t, err)
		}
	})

	t.Run("DecidedReadsAsDecided", func(t *testing.T) {
		run, req := c.startRun(t, "support_triage", "T-edit", demo.Ticket{ID: "T-edit", Customer: "ada@example.com",
			Subject: "How do I login?", Body: "password"}, "api@example.com")
		doc, _ := c.get(t, reviewer, "/requests/"+req.ID)
		require.Equal(t, 1, doc.Find(`[data-testid=deadline]`).Length(), "a pending request shows its deadline")
		require.Equal(t, 3, doc.Find(`[data-testid=edit-field]`).Length(), "to, subject, body")
		require.Equal(t, 1, doc.Find(`textarea[name="param/body"]`).Length(), "long text is a text area")
		var action workflow.Action
		require.NoError(t, jsonUnmarshal(req.Action, &action))
		body := strings.Replace(action.Params["body"].(string), "sign-in page", "account page", 1)
		form := url.Values{"verdict": {"edit"}, "payload_hash": {req.PayloadHash}, "comment": {"account page is right"},
			"param/to": {action.Params["to"].(string)}, "param/subject": {action.Params["subject"].(string)},
			"param/body": {strings.ReplaceAll(body, "\n", "\r\n")}} // as a browser sends a textarea
		resp := decide(t, req.ID, form)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		c.WaitRun(t, run.ID, vocab.RunCompleted)
		d, err := store.DecisionGetByRequest(ctx, c.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.VerdictEdit, d.Verdict)
		require.Contains(t, string(d.EditedParams), "account page")
		require.NotContains(t, string(d.EditedParams), `\r`, "line breaks stay as they were")

		doc, _ = c.get(t, reviewer, "/requests/"+req.ID)
		what := doc.Find(`[data-testid=what-happened]`)
		require.Contains(t, what.Find(`[data-testid=outcome]`).Text(), "Approved with edits by reviewer@example.com at")
		require.Contains(t, what.Text(), "account page is right")
		require.Equal(t, []string{"sign-in", "account"}, textsOf(what.Find(`[data-testid=executed] [data-testid=changed-words]`)),
			"the executed parameters show the edit, word by word")
		require.Zero(t, doc.Find(`[data-testid=deadline]`).Length(), "no counting deadline once decided")
		require.Zero(t, doc.Find(`[data-testid=decision-form]`).Length())
		require.Zero(t, doc.Find(`[data-testid=approve]`).Length())
	})

	t.Run("FieldErrorsAndPRG", func(t *testing.T) {
		req := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{Action: &workflow.Action{Kind: "factory.act",
			Summary: "Set a note", Params: map[string]any{"n": 1.0, "note": "", "on": true},
			Current: map[string]any{"note": ""}, Risk: "low", Reversible: true}})
		page := "/requests/" + req.ID
		doc, _ := c.get(t, reviewer, page)
		require.Contains(t, doc.Find(`[data-testid=params] [data-testid=empty]`).Text(), "(empty)", "an empty value says so")

		resp := decide(t, req.ID, url.Values{"verdict": {"edit"}, "payload_hash": {req.PayloadHash}, "comment": {"kept"},
			"param/n": {"many"}, "param/note": {"hello"}, "param/on": {"false"}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, "a refused POST redirects")
		loc := resp.Header.Get("Location")
		require.Contains(t, loc, "refused=")
		for range 2 { // a reload shows the same and sends nothing
			doc, status := c.get(t, reviewer, loc)
			require.Equal(t, http.StatusUnprocessableEntity, status)
			n := doc.Find(`[data-testid=edit-field][data-pointer="/n"]`)
			require.Contains(t, n.Find(`[data-testid=field-error]`).Text(), "must be a number")
			require.Equal(t, "true", n.Find(`input`).AttrOr("aria-invalid", ""))
			require.Equal(t, "many", n.Find(`input`).AttrOr("value", ""), "what was typed is kept")
			require.Equal(t, "hello", doc.Find(`input[name="param/note"]`).AttrOr("value", ""))
			require.Equal(t, 1, doc.Find(`select[name="param/on"] option[value=false][selected]`).Length())
			require.Equal(t, "kept", doc.Find(`[data-testid=comment]`).AttrOr("value", ""))
			got, err := store.RequestGet(ctx, c.Pool, req.ID)
			require.NoError(t, err)
			require.Equal(t, vocab.RequestPending, got.Status)
		}
		other := c.client(t, "approver@example.com")
		doc, status := c.get(t, other, loc)
		require.Equal(t, http.StatusOK, status, "a refusal shows only to whoever was refused")
		require.Zero(t, doc.Find(`[data-testid=field-error]`).Length())

		resp = decide(t, req.ID, url.Values{"verdict": {"reject"}, "payload_hash": {req.PayloadHash}, "reason": {"  "}})
		doc, status = c.get(t, reviewer, resp.Header.Get("Location"))
		require.Equal(t, http.StatusUnprocessableEntity, status)
		reason := doc.Find(`#reason`)
		require.Equal(t, "true", reason.AttrOr("aria-invalid", ""))
		_, focus := reason.Attr("autofocus")
		require.True(t, focus, "a rejection without a reason focuses the reason")
		_, open := reason.Closest("details").Attr("open")
		require.True(t, open)
		require.Contains(t, doc.Find(`[data-testid=reason-error]`).Text(), "needs a reason")
	})

	t.Run("MultiApproval", func(t *testing.T) {
		req := factory.Request(ctx, t, c.Pool, &factory.RequestOpts{ApprovalsRequired: factory.Ptr(2), Roles: []vocab.Role{vocab.RoleApprover}})
		page := "/requests/" + req.ID
		first, second := c.client(t, "approver@example.com"), c.client(t, "approver2@example.com")
		resp, _ := c.post(t, first, page, page+"/decision", url.Values{"verdict": {"approve"}, "payload_hash": {req.PayloadHash}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)

		doc, _ := c.get(t, first, page)
		require.Zero(t, doc.Find(`[data-testid=approve]`).Length(), "who voted sees no Approve button")
		require.Contains(t, doc.Find(`[data-testid=already-voted]`).Text(), "You approved this; 1 more")
		require.Contains(t, doc.Find(`[data-testid=approvals]`).Text(), "1 of 2 approvals")
		require.Contains(t, doc.Find(`[data-testid=vote]`).Text(), "approver@example.com at")

		doc, _ = c.get(t, second, page)
		require.Equal(t, 1, doc.Find(`[data-testid=approve]`).Length())
		require.Contains(t, doc.Find(`[data-testid=vote]`).Text(), "approver@example.com", "who approved so far")

		doc, _ = c.get(t, second, page+"/state")
		require.Zero(t, doc.Find(`[data-testid=decided-live]`).Length(), "pending: nothing to say")
		resp, _ = c.post(t, second, page, page+"/decision", url.Values{"verdict": {"approve"}, "payload_hash": {req.PayloadHash}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		doc, _ = c.get(t, first, page+"/state")
		require.Contains(t, doc.Find(`[data-testid=decided-live]`).Text(), "Approved by approver2@example.com")

		doc, _ = c.get(t, first, page)
		require.Equal(t, []string{"approver@example.com", "approver2@example.com"}, actorsOf(doc.Find(`[data-testid=what-happened] [data-testid=vote]`)))
	})
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// textsOf returns the trimmed text of each element.
func textsOf(s *goquery.Selection) []string {
	var out []string
	s.Each(func(_ int, e *goquery.Selection) { out = append(out, strings.TrimSpace(e.Text())) })
	return out
}

// actorsOf returns the first word of each element: the voter.
func actorsOf(s *goquery.Selection) []string {
	var out []string
	s.Each(func(_ int, e *goquery.Selection) { out = append(out, strings.Fields(e.Text())[0]) })
	return out
}
