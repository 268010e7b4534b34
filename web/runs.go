package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

const runsPage = 50

// runListParams reads the run filters shared by the runs page and the API.
func runListParams(c echo.Context, limit int) (store.RunListParams, error) {
	p := store.RunListParams{Status: c.QueryParam("status"), Workflow: c.QueryParam("workflow"),
		BusinessKey: c.QueryParam("key"), Limit: limit}
	if p.Status != "" && !vocab.RunStatus(p.Status).Valid() {
		return p, echo.NewHTTPError(http.StatusBadRequest, "unknown status "+p.Status)
	}
	var cur timeCursor
	if ok, err := readAfter(c, &cur, &cur.ID); err != nil {
		return p, err
	} else if ok {
		p.AfterTime, p.AfterID = &cur.T, cur.ID
	}
	return p, nil
}

// handleRuns handles the "GET /runs" route.
func (s *Server) handleRuns(c echo.Context) error {
	v, err := s.runsView(c)
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.Runs(s.page(c, "Runs", "runs"), v))
}

// handleRunsRows handles the "GET /runs/rows" route: the runs table alone,
// with the page's filters, which the page refetches when runs change.
func (s *Server) handleRunsRows(c echo.Context) error {
	v, err := s.runsView(c)
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.RunsTable(v))
}

// runsView loads a page of runs and each one's latest approval request.
func (s *Server) runsView(c echo.Context) (templates.RunsView, error) {
	p, err := runListParams(c, runsPage)
	if err != nil {
		return templates.RunsView{}, err
	}
	runs, err := store.RunList(c.Request().Context(), s.Pool, p)
	if err != nil {
		return templates.RunsView{}, err
	}
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	requests, err := store.RequestLatestByRuns(c.Request().Context(), s.Pool, ids)
	if err != nil {
		return templates.RunsView{}, err
	}
	q := url.Values{}
	for k, v := range map[string]string{"status": p.Status, "workflow": p.Workflow, "key": p.BusinessKey} {
		if v != "" {
			q.Set(k, v)
		}
	}
	v := templates.RunsView{Runs: runs, Requests: requests, Status: p.Status, Workflow: p.Workflow, Key: p.BusinessKey,
		Statuses: vocab.RunStatuses(), Workflows: s.Engine.Registry().Names(), Query: q.Encode(),
		Live: "/runs/rows?" + c.QueryParams().Encode()}
	if len(runs) == runsPage {
		last := runs[len(runs)-1]
		v.Next = nextTimeCursor(last.CreatedAt, last.ID)
	}
	return v, nil
}

// handleRun handles the "GET /runs/:id" route.
func (s *Server) handleRun(c echo.Context) error {
	p, v, err := s.runView(c, c.Param("id"))
	if err != nil {
		return err
	}
	switch c.QueryParam("done") {
	case "cancel":
		p.Flash = "Run cancelled."
	case "unusable":
		p.Flash = "Run flagged unusable."
	}
	return render(c, http.StatusOK, templates.RunDetail(p, v))
}

// runView reads what the run page shows of run id.
func (s *Server) runView(c echo.Context, id string) (templates.Page, templates.RunView, error) {
	ctx := c.Request().Context()
	run, err := store.RunGet(ctx, s.Pool, id)
	if err != nil {
		return templates.Page{}, templates.RunView{}, err
	}
	v := templates.RunView{Run: run, CanCancel: currentUser(c).Role == vocab.RoleAdmin && !run.Status.Final() && run.CompensationCause == nil}
	fail := func(err error) (templates.Page, templates.RunView, error) {
		return templates.Page{}, templates.RunView{}, err
	}
	if v.Steps, err = store.StepList(ctx, s.Pool, run.ID); err != nil {
		return fail(err)
	}
	if v.Requests, err = store.RequestListByRun(ctx, s.Pool, run.ID); err != nil {
		return fail(err)
	}
	if v.Attempts, err = store.StepAttemptList(ctx, s.Pool, run.ID); err != nil {
		return fail(err)
	}
	if v.History, err = store.AuditList(ctx, s.Pool, store.AuditFilter{RunID: run.ID}, 0, 1000); err != nil {
		return fail(err)
	}
	slices.Reverse(v.History) // in the order it happened
	if run.Status == vocab.RunCompleted {
		if v.Unusable, err = store.UnusableGet(ctx, s.Pool, run.ID); errors.Is(err, store.ErrNotFound) {
			v.Unusable, err = nil, nil
			v.CanFlag = currentUser(c).Role.CanDecide()
		}
		if err != nil {
			return fail(err)
		}
	}
	return s.page(c, run.Workflow+" "+run.BusinessKey, "runs"), v, nil
}

// handleRunStatus handles the "GET /runs/:id/status" route: the status badge,
// refreshed live on run pages.
func (s *Server) handleRunStatus(c echo.Context) error {
	run, err := store.RunGet(c.Request().Context(), s.Pool, c.Param("id"))
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.RunStatus(run))
}

// handleRunCancel handles the "POST /runs/:id/cancel" route (admins). The
// form's confirm field is set only by the button of the confirmation the
// run page shows, so that no single click stops a run.
func (s *Server) handleRunCancel(c echo.Context) error {
	u := currentUser(c)
	if u.Role != vocab.RoleAdmin {
		return echo.NewHTTPError(http.StatusForbidden, "only admins may cancel runs")
	}
	if c.FormValue("confirm") != "yes" {
		return echo.NewHTTPError(http.StatusBadRequest, "cancelling a run must be confirmed: use the run page's confirmation")
	}
	id := c.Param("id")
	err := s.Engine.Cancel(c.Request().Context(), id, u.Email)
	if errors.Is(err, workflow.ErrFinal) {
		return echo.NewHTTPError(http.StatusConflict, "the run has already ended")
	} else if err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/runs/"+id+"?done=cancel")
}
