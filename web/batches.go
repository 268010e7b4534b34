package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// batchListLimit bounds each section of the batches page.
const batchListLimit = 100

// handleBatches handles the "GET /batches" route: batches ready for review,
// then those still collecting items.
func (s *Server) handleBatches(c echo.Context) error {
	ctx := c.Request().Context()
	ready, err := store.BatchList(ctx, s.Pool, string(vocab.BatchReady), batchListLimit)
	if err != nil {
		return err
	}
	open, err := store.BatchList(ctx, s.Pool, string(vocab.BatchOpen), batchListLimit)
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.Batches(s.page(c, "Batches", "batches"),
		templates.BatchesView{Batches: ready, Collecting: open, Now: s.Now()}))
}

// batchView loads a batch and its pending items.
func (s *Server) batchView(c echo.Context, id string) (templates.BatchView, error) {
	ctx := c.Request().Context()
	var v templates.BatchView
	b, err := store.BatchGet(ctx, s.Pool, id)
	if err != nil {
		return v, err
	}
	items, err := store.BatchItems(ctx, s.Pool, id)
	if err != nil {
		return v, err
	}
	v.Batch = b
	for _, r := range items {
		it := templates.BatchItem{Request: r}
		if err := json.Unmarshal(r.Action, &it.Action); err != nil {
			return v, fmt.Errorf("decode action: %w", err)
		}
		it.Changes = templates.Changes(it.Action.Current, it.Action.Params)
		v.Items = append(v.Items, it)
	}
	// The buttons are offered to whoever the engine would let decide an item.
	if b.Status != vocab.BatchOpen {
		roles := actorOf(currentUser(c)).Roles
		for _, it := range v.Items {
			if workflow.CanDecide(it.Request, roles) {
				v.CanDecide = true
				break
			}
		}
	}
	if b.Status == vocab.BatchOpen {
		v.Error = "This batch is still collecting items; it is ready when it fills up or its wait is over."
	}
	return v, nil
}

// handleBatch handles the "GET /batches/:id" route; after a decision,
// ?decision= names it and the page shows its outcome.
func (s *Server) handleBatch(c echo.Context) error {
	v, err := s.batchView(c, c.Param("id"))
	if err != nil {
		return err
	}
	if id := c.QueryParam("decision"); id != "" {
		if err := checkID("decision", id); err != nil {
			return err
		}
		d, err := store.BatchDecisionGet(c.Request().Context(), s.Pool, id)
		if err != nil {
			return err
		}
		if d.BatchID != v.Batch.ID {
			return echo.NewHTTPError(http.StatusNotFound, "no such decision for this batch")
		}
		v.Result = &workflow.BatchResult{DecisionID: d.ID, Approved: d.Approved, Rejected: d.Rejected, LeftOut: d.LeftOut}
		if err := json.Unmarshal(d.Refused, &v.Result.Refused); err != nil {
			return fmt.Errorf("decode refused items: %w", err)
		}
		if err := json.Unmarshal(d.Items, &v.Result.Items); err != nil {
			return fmt.Errorf("decode batch decision items: %w", err)
		}
		var leftOut []string
		for _, it := range v.Result.Items {
			if it.Outcome == "left_out" {
				leftOut = append(leftOut, it.RequestID)
			}
		}
		if v.Outcome, err = store.BatchDecisionItems(c.Request().Context(), s.Pool, v.Batch.ID, d.ID, leftOut); err != nil {
			return err
		}
		// The next ready batch, in the list's order, so that a reviewer
		// goes on without returning to the list.
		next, err := store.BatchList(c.Request().Context(), s.Pool, string(vocab.BatchReady), 2)
		if err != nil {
			return err
		}
		for _, b := range next {
			if b.ID != v.Batch.ID {
				v.Next = b
				break
			}
		}
	}
	return render(c, http.StatusOK, templates.BatchPage(s.page(c, "Batch", "batches"), v))
}

// handleBatchDecide handles the "POST /batches/:id/decision" route. The form
// carries every item shown, as id:payload_hash, and the selected ids.
func (s *Server) handleBatchDecide(c echo.Context) error {
	u := currentUser(c)
	form, err := c.FormParams()
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "the form could not be read")
	}
	p := workflow.BatchDecideParams{BatchID: c.Param("id"), Actor: actorOf(u),
		Action: form.Get("action"), Selected: form["selected"], Reason: form.Get("reason")}
	for _, it := range form["item"] {
		id, hash, ok := strings.Cut(it, ":")
		if !ok {
			return echo.NewHTTPError(http.StatusBadRequest, "malformed item "+it)
		}
		p.Items = append(p.Items, workflow.ItemRef{ID: id, PayloadHash: hash})
	}
	// A bad id is refused like any other mistake: on the batch page, with
	// nothing decided.
	var res *workflow.BatchResult
	err = checkItemIDs(p.Items, p.Selected)
	if err == nil {
		res, err = s.Engine.DecideBatch(c.Request().Context(), p)
	}
	if err == nil {
		// Post, redirect, get: reloading the outcome page decides nothing again.
		return c.Redirect(http.StatusSeeOther, "/batches/"+p.BatchID+"?decision="+res.DecisionID)
	}
	status, _, msg := httpError(err)
	if status >= 500 {
		return err
	}
	v, verr := s.batchView(c, p.BatchID)
	if verr != nil {
		return verr
	}
	v.Error, v.Reason = msg, p.Reason
	return render(c, status, templates.BatchPage(s.page(c, "Batch", "batches"), v))
}

// checkItemIDs refuses a batch decision naming an item that is not a uuid,
// before anything reaches the database.
func checkItemIDs(items []workflow.ItemRef, selected []string) error {
	for _, it := range items {
		if err := checkID("each item's id", it.ID); err != nil {
			return err
		}
	}
	for _, id := range selected {
		if err := checkID("each selected id", id); err != nil {
			return err
		}
	}
	return nil
}

// handleBatchProgress handles the "GET /batches/:id/progress" route: how far
// the runs of a batch decision have got.
func (s *Server) handleBatchProgress(c echo.Context) error {
	if err := checkID("decision", c.QueryParam("decision")); err != nil {
		return err
	}
	counts, total, err := store.BatchDecisionRunStatuses(c.Request().Context(), s.Pool, c.QueryParam("decision"))
	if err != nil {
		return err
	}
	status, settled := http.StatusOK, 0
	for s, n := range counts {
		if st := vocab.RunStatus(s); st.Final() || st == vocab.RunWaitingHuman {
			settled += n
		}
	}
	if total > 0 && settled == total {
		// Every run has settled: status 286 tells htmx to stop polling.
		status = 286
	}
	return render(c, status, templates.BatchProgress(templates.Progress{Total: total, Counts: counts}))
}

// handleAuto handles the "GET /auto" route: what the policy approved on its own.
func (s *Server) handleAuto(c echo.Context) error {
	reqs, err := store.RequestListAuto(c.Request().Context(), s.Pool, 200)
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.Auto(s.page(c, "Approved automatically", "auto"), templates.AutoView{Requests: reqs}))
}

// handleAPIBatchList handles the "GET /api/v1/batches" route.
func (s *Server) handleAPIBatchList(c echo.Context) error {
	status := c.QueryParam("status")
	if status == "" {
		status = string(vocab.BatchReady)
	}
	if !vocab.BatchStatus(status).Valid() {
		return echo.NewHTTPError(http.StatusBadRequest, "status must be open, ready or decided")
	}
	batches, err := store.BatchList(c.Request().Context(), s.Pool, status, 200)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, batchPageJSON{Batches: mapSlice(batches, batchOf)})
}

// handleAPIBatchGet handles the "GET /api/v1/batches/:id" route: the batch
// and its pending items with their payload hashes.
func (s *Server) handleAPIBatchGet(c echo.Context) error {
	ctx := c.Request().Context()
	b, err := store.BatchGet(ctx, s.Pool, c.Param("id"))
	if err != nil {
		return err
	}
	items, err := store.BatchItems(ctx, s.Pool, b.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, batchDetailJSON{Batch: batchOf(b), Items: mapSlice(items, requestOf)})
}

type batchDecisionBody struct {
	Verdict  string             `json:"verdict"`
	Items    []workflow.ItemRef `json:"items"`
	Selected []string           `json:"selected"`
	Reason   string             `json:"reason"`
}

// handleAPIBatchDecide handles the "POST /api/v1/batches/:id/decision" route.
// "items" are the items the caller saw; "selected" defaults to all of them.
func (s *Server) handleAPIBatchDecide(c echo.Context) error {
	u := currentUser(c)
	var b batchDecisionBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	// "approve" and "reject" act on exactly the items listed.
	switch vocab.Verdict(b.Verdict) {
	case vocab.VerdictApprove:
		b.Verdict, b.Selected = workflow.ApproveSelected, nil
	case vocab.VerdictReject:
		b.Verdict = workflow.RejectAll
	}
	if err := checkItemIDs(b.Items, b.Selected); err != nil {
		return err
	}
	if b.Selected == nil && b.Verdict != workflow.RejectAll {
		for _, it := range b.Items {
			b.Selected = append(b.Selected, it.ID)
		}
	}
	res, err := s.Engine.DecideBatch(c.Request().Context(), workflow.BatchDecideParams{BatchID: c.Param("id"),
		Actor: actorOf(u), Action: b.Verdict, Items: b.Items,
		Selected: b.Selected, Reason: b.Reason})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, batchDecisionOf(res))
}
