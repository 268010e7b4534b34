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
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// TestEditOntoAStricterRule is the bypass the security review found: a
// reviewer may decide a 100 EUR refund, and must not be able to edit it into
// a big-refund (two approvers, approver role) and approve that alone.
func TestEditOntoAStricterRule(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	ticket := func(id string) demo.Ticket {
		return demo.Ticket{ID: id, Customer: "ada@example.com", Subject: "Refund", Body: "broken", OrderTotal: 100}
	}
	mallory := `{"amount": 250000, "currency": "EUR", "customer": "mallory@example.com", "reason": "Refund"}`

	// nothingWritten checks that the refused edit left no trace.
	nothingWritten := func(t *testing.T, run *store.Run, req *store.Request) {
		t.Helper()
		var decisions, events int
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE request_id = $1`, req.ID).Scan(&decisions))
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE subject_id = $1 AND kind <> 'approval.requested'`, req.ID).Scan(&events))
		require.Zero(t, decisions)
		require.Zero(t, events, "no decision or vote event")
		got, err := store.RequestGet(ctx, c.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestPending, got.Status)
		r, err := store.RunGet(ctx, c.Pool, run.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunWaitingHuman, r.Status)
	}

	t.Run("API", func(t *testing.T) {
		run, req := c.startRun(t, "support_triage", "T-api", ticket("T-api"), "api@example.com")
		require.Equal(t, "refund", req.Rule)
		var e apiErr
		require.Equal(t, 422, c.api(t, "reviewer@example.com").do("POST", "/requests/"+req.ID+"/decision", map[string]any{
			"verdict": "edit", "payload_hash": req.PayloadHash, "edited_params": json.RawMessage(mallory)}, &e))
		require.Equal(t, "edit_needs_review", e.Error.Code)
		require.Contains(t, e.Error.Message, `rule "big-refund"`)
		require.Contains(t, e.Error.Message, "needs 2 approvers")
		nothingWritten(t, run, req)
	})

	t.Run("Console", func(t *testing.T) {
		run, req := c.startRun(t, "support_triage", "T-page", ticket("T-page"), "api@example.com")
		reviewer := c.client(t, "reviewer@example.com")
		page := "/requests/" + req.ID
		resp, body := c.post(t, reviewer, page, page+"/decision", url.Values{"verdict": {"edit"},
			"payload_hash": {req.PayloadHash}, "edited_params": {mallory}, "comment": {"kept"}})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
		doc, err := goquery.NewDocumentFromReader(strings.NewReader(body))
		require.NoError(t, err)
		msg := doc.Find(`[data-testid=form-error]`).Text()
		require.Contains(t, msg, `rule "big-refund"`, "the form says which rule the edit fell under")
		require.Contains(t, body, `value="kept"`, "what the reviewer typed survives")
		nothingWritten(t, run, req)

		// Within its rule the same reviewer's edit goes through.
		resp, _ = c.post(t, reviewer, page, page+"/decision", url.Values{"verdict": {"edit"},
			"payload_hash": {req.PayloadHash}, "edited_params": {`{"amount": 80, "currency": "EUR", "customer": "ada@example.com", "reason": "Refund"}`}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		d, err := store.DecisionGetByRequest(ctx, c.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, "refund", d.Rule)
		require.Equal(t, "refund", *d.EditedRule)
		require.NotEqual(t, req.PayloadHash, *d.EditedPayloadHash)
		c.WaitRun(t, run.ID, vocab.RunCompleted)
	})
}
