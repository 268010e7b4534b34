package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// decodeJSON reads a request body strictly: unknown fields and trailing data
// are the client's mistake, reported with a 400.
func decodeJSON(c echo.Context, v any) error { return decodeBody(c, v, false) }

// decodeJSONNumbers is decodeJSON keeping numbers as written (json.Number
// in an any): an action's params are executed as filed, and a float64
// would round an integer over 2^53.
func decodeJSONNumbers(c echo.Context, v any) error { return decodeBody(c, v, true) }

func decodeBody(c echo.Context, v any, numbers bool) error {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "the request body could not be read")
	}
	// PostgreSQL stores no NUL character, in text or in jsonb.
	if bytes.Contains(body, []byte(`\u0000`)) {
		return echo.NewHTTPError(http.StatusBadRequest, "the body contains a NUL character (\\u0000), which cannot be stored")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if numbers {
		dec.UseNumber()
	}
	if err := dec.Decode(v); err != nil {
		return echo.NewHTTPError(http.StatusBadRequest, "the body is not valid JSON for this call: "+err.Error())
	}
	if dec.More() {
		return echo.NewHTTPError(http.StatusBadRequest, "unexpected data after the JSON body")
	}
	return nil
}

type startRunBody struct {
	Workflow    string          `json:"workflow"`
	BusinessKey string          `json:"business_key"`
	Input       json.RawMessage `json:"input"`
}

// handleAPIRunStart handles the "POST /api/v1/runs" route: 201 with a new run,
// 200 with the existing run of that workflow and business key.
func (s *Server) handleAPIRunStart(c echo.Context) error {
	u := currentUser(c)
	if u.Role == vocab.RoleViewer {
		return echo.NewHTTPError(http.StatusForbidden, "viewers cannot start runs")
	}
	var b startRunBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	if b.Workflow == "" || b.BusinessKey == "" {
		return fmt.Errorf("%w: workflow and business_key are required", workflow.ErrInvalidInput)
	}
	run, created, err := s.Engine.Start(c.Request().Context(), workflow.StartParams{
		Workflow: b.Workflow, BusinessKey: b.BusinessKey, Input: b.Input, StartedBy: u.Email})
	if err != nil {
		return err
	}
	if created {
		return c.JSON(http.StatusCreated, runOf(run))
	}
	return c.JSON(http.StatusOK, runOf(run))
}

// handleAPIRunGet handles the "GET /api/v1/runs/:id" route.
func (s *Server) handleAPIRunGet(c echo.Context) error {
	ctx := c.Request().Context()
	run, err := store.RunGet(ctx, s.Pool, c.Param("id"))
	if err != nil {
		return err
	}
	steps, err := store.StepList(ctx, s.Pool, run.ID)
	if err != nil {
		return err
	}
	attempts, err := store.StepAttemptList(ctx, s.Pool, run.ID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, runWithStepsJSON{runOf(run), stepsOf(steps, attempts)})
}

// handleAPIRunList handles the "GET /api/v1/runs" route: newest first, with
// a "next" cursor while there are more.
func (s *Server) handleAPIRunList(c echo.Context) error {
	limit, err := apiLimit(c)
	if err != nil {
		return err
	}
	p, err := runListParams(c, limit)
	if err != nil {
		return err
	}
	runs, err := store.RunList(c.Request().Context(), s.Pool, p)
	if err != nil {
		return err
	}
	out := runPageJSON{Runs: mapSlice(runs, runOf)}
	if len(runs) == limit {
		last := runs[len(runs)-1]
		out.Next = nextTimeCursor(last.CreatedAt, last.ID)
	}
	return c.JSON(http.StatusOK, out)
}

func apiLimit(c echo.Context) (int, error) {
	limit := 50
	if l := c.QueryParam("limit"); l != "" {
		if _, err := fmt.Sscan(l, &limit); err != nil || limit < 1 || limit > 200 {
			return 0, echo.NewHTTPError(http.StatusBadRequest, "limit must be between 1 and 200")
		}
	}
	return limit, nil
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// handleAPIRequestList handles the "GET /api/v1/requests" route.
func (s *Server) handleAPIRequestList(c echo.Context) error {
	limit, err := apiLimit(c)
	if err != nil {
		return err
	}
	p := store.RequestListParams{Status: c.QueryParam("status"), Tier: c.QueryParam("tier"), Limit: limit}
	if p.Status != "" && !vocab.RequestStatus(p.Status).Valid() {
		return echo.NewHTTPError(http.StatusBadRequest, "unknown status "+p.Status)
	}
	if p.Tier != "" && !vocab.Tier(p.Tier).Valid() {
		return echo.NewHTTPError(http.StatusBadRequest, "tier must be auto, batched or explicit")
	}
	var cur timeCursor
	if ok, err := readAfter(c, &cur, &cur.ID); err != nil {
		return err
	} else if ok {
		p.AfterTime, p.AfterID = &cur.T, cur.ID
	}
	reqs, err := store.RequestList(c.Request().Context(), s.Pool, p)
	if err != nil {
		return err
	}
	out := requestPageJSON{Requests: mapSlice(reqs, requestOf)}
	if len(reqs) == limit {
		last := reqs[len(reqs)-1]
		out.Next = nextTimeCursor(last.CreatedAt, last.ID)
	}
	return c.JSON(http.StatusOK, out)
}

// handleAPIRequestGet handles the "GET /api/v1/requests/:id" route.
func (s *Server) handleAPIRequestGet(c echo.Context) error {
	ctx := c.Request().Context()
	req, err := store.RequestGet(ctx, s.Pool, c.Param("id"))
	if err != nil {
		return err
	}
	out := requestDetailJSON{requestJSON: requestOf(req)}
	votes, err := store.VoteList(ctx, s.Pool, req.ID)
	if err != nil {
		return err
	}
	out.Votes = nonNilSlice(votes)
	if d, err := store.DecisionGetByRequest(ctx, s.Pool, req.ID); err == nil {
		out.Decision = decisionOf(d)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

type decisionBody struct {
	Verdict      string         `json:"verdict"`
	Reason       string         `json:"reason"`
	Comment      string         `json:"comment"`
	PayloadHash  string         `json:"payload_hash"`
	EditedParams map[string]any `json:"edited_params"`
}

// handleAPIDecide handles the "POST /api/v1/requests/:id/decision" route:
// 200, 409 when already decided or the payload changed, 403 when not allowed,
// 422 when invalid.
func (s *Server) handleAPIDecide(c echo.Context) error {
	u := currentUser(c)
	var b decisionBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	res, err := s.Engine.Decide(c.Request().Context(), workflow.DecideParams{
		RequestID: c.Param("id"), Actor: actorOf(u),
		Verdict: vocab.Verdict(b.Verdict), Reason: b.Reason, Comment: b.Comment, PayloadHash: b.PayloadHash, EditedParams: b.EditedParams,
	})
	if err != nil {
		return err
	}
	out := decideJSON{Request: requestOf(res.Request), Decision: decisionOf(res.Decision),
		Approvals: res.Votes, ApprovalsRequired: res.Required, Status: decideDecided}
	if res.Decision == nil {
		out.Status = decideAwaitingMoreApproval
	}
	return c.JSON(http.StatusOK, out)
}
