package web_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// writes counts what a batch decision may write (sign-ins and tokens made
// by the test itself aside).
type writes struct {
	BatchDecisions, Decisions, Events, InBatch int
}

func (c *console) writes(t *testing.T, batchID string) writes {
	t.Helper()
	var w writes
	require.NoError(t, c.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM batch_decisions),
		(SELECT count(*) FROM decisions),
		(SELECT count(*) FROM audit_events WHERE kind NOT LIKE 'auth.%' AND kind NOT LIKE 'token.%'),
		(SELECT count(*) FROM approval_requests WHERE batch_id = $1 AND status = 'pending' AND tier = 'batched')`, batchID).
		Scan(&w.BatchDecisions, &w.Decisions, &w.Events, &w.InBatch))
	return w
}

// TestBatchDecisionRefusals posts batch decisions that must be refused
// before anything is written: a viewer's, and one naming an item by
// something that is not an id; over the console form and the API.
func TestBatchDecisionRefusals(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	batchID, runs := readyBatch(t, c)
	items, err := store.BatchItems(context.Background(), c.Pool, batchID)
	require.NoError(t, err)
	page, path := "/batches/"+batchID, "/batches/"+batchID+"/decision"
	form := func(itemIDs ...string) url.Values {
		v := url.Values{"action": {"approve_selected"}, "selected": {items[0].ID}}
		for i, it := range items {
			id := it.ID
			if i < len(itemIDs) {
				id = itemIDs[i]
			}
			v.Add("item", id+":"+it.PayloadHash)
		}
		return v
	}
	body := func(itemIDs ...string) map[string]any {
		var list []map[string]string
		for i, it := range items {
			id := it.ID
			if i < len(itemIDs) {
				id = itemIDs[i]
			}
			list = append(list, map[string]string{"id": id, "payload_hash": it.PayloadHash})
		}
		return map[string]any{"verdict": "approve_selected", "items": list, "selected": []string{items[0].ID}}
	}
	before := c.writes(t, batchID)
	require.Equal(t, 5, before.InBatch)

	t.Run("Viewer", func(t *testing.T) {
		hc := c.client(t, "viewer@example.com")
		resp, html := c.post(t, hc, page, path, form())
		require.Equal(t, http.StatusForbidden, resp.StatusCode, html)
		require.Contains(t, html, "needs one of the roles")
		var e apiErr
		require.Equal(t, http.StatusForbidden, c.api(t, "viewer@example.com").do("POST", path, body(), &e))
		require.Equal(t, "forbidden", e.Error.Code)
		require.Equal(t, before, c.writes(t, batchID), "no batch decision, no event, no item left out")
	})

	t.Run("MalformedIDs", func(t *testing.T) {
		hc := c.client(t, "reviewer@example.com")
		api := c.api(t, "reviewer@example.com")
		for _, bad := range []string{"nope", "urn:uuid:" + items[0].ID, items[0].ID[:35]} {
			resp, html := c.post(t, hc, page, path, form(items[0].ID, bad))
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", bad, html)
			require.Contains(t, html, "must be an id")
			var e apiErr
			require.Equal(t, http.StatusBadRequest, api.do("POST", path, body(items[0].ID, bad), &e), bad)
			require.Contains(t, e.Error.Message, "must be an id")
		}
		f := form()
		f.Set("selected", "nope")
		resp, html := c.post(t, hc, page, path, f)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, html)
		var e apiErr
		require.Equal(t, http.StatusNotFound, api.do("POST", "/batches/nope/decision", body(), &e))
		require.Equal(t, before, c.writes(t, batchID), "nothing written")
	})

	t.Run("ReviewerStillDecides", func(t *testing.T) {
		hc := c.client(t, "reviewer@example.com")
		resp, html := c.post(t, hc, page, path, form())
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, html)
		after := c.writes(t, batchID)
		require.Equal(t, 1, after.BatchDecisions)
		require.Equal(t, 1, after.Decisions)
		require.Zero(t, after.InBatch, "one approved, four left out")
		c.WaitRun(t, runs[0].ID, vocab.RunCompleted)
	})
}

// TestRunInputThatCannotBeStored starts a run whose input is valid JSON that
// jsonb refuses: a 4xx that says so, and no run.
func TestRunInputThatCannotBeStored(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	api := c.api(t, "reviewer@example.com")
	var e apiErr
	code := api.do("POST", "/runs", `{"workflow":"support_triage","business_key":"surrogate",
		"input":{"ticket_id":"1","customer":"a@example.com","subject":"\ud800","body":"hello"}}`, &e)
	require.Equal(t, http.StatusUnprocessableEntity, code, e.Error.Message)
	require.Equal(t, "invalid", e.Error.Code)
	require.Contains(t, e.Error.Message, "invalid input")
	var n int
	require.NoError(t, c.Pool.QueryRow(context.Background(), `SELECT count(*) FROM workflow_runs WHERE business_key = 'surrogate'`).Scan(&n))
	require.Zero(t, n)
}
