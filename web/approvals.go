package web

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/templates"
)

// approvalBody is POST /api/v1/approvals's body.
type approvalBody struct {
	IdempotencyKey string           `json:"idempotency_key"`
	Action         *workflow.Action `json:"action"`
	CallbackURL    string           `json:"callback_url"`
	Context        json.RawMessage  `json:"context"`
	Revises        string           `json:"revises"`
}

// callerOf is the approvals service's view of the calling token and user.
func callerOf(c echo.Context) ask.Caller {
	u := currentUser(c)
	caller := ask.Caller{UserID: u.ID, Email: u.Email, Role: u.Role}
	if tok, ok := c.Get("token").(*store.Token); ok && tok != nil {
		caller.TokenID, caller.Scopes = tok.PublicID, append([]string{}, tok.Scopes...)
	}
	return caller
}

// handleAPIApprovalSubmit handles the "POST /api/v1/approvals" route: 200
// with an approval already decided (the auto tier answers at once, or a
// repeated key of a decided one), 202 with a pending one.
func (s *Server) handleAPIApprovalSubmit(c echo.Context) error {
	var b approvalBody
	if err := decodeJSONNumbers(c, &b); err != nil {
		return err
	}
	key := b.IdempotencyKey
	if h := c.Request().Header.Get("Idempotency-Key"); h != "" {
		if key != "" && key != h {
			return fmt.Errorf("%w: the Idempotency-Key header and idempotency_key differ", ask.ErrBadRequest)
		}
		key = h
	}
	if b.Action == nil {
		return fmt.Errorf("%w: action is required", ask.ErrBadRequest)
	}
	a, _, err := s.Ask.Submit(c.Request().Context(), callerOf(c), ask.Submission{IdempotencyKey: key,
		Action: *b.Action, CallbackURL: b.CallbackURL, Context: b.Context, Revises: b.Revises})
	if err != nil {
		return err
	}
	return s.approvalAnswer(c, a)
}

// handleAPIApprovalGet handles the "GET /api/v1/approvals/:id" route,
// long-polling up to ?wait= (at most 60 s) for a decision. Always 200 with
// the approval as it stands.
func (s *Server) handleAPIApprovalGet(c echo.Context) error {
	wait, err := parseWait(c.QueryParam("wait"))
	if err != nil {
		return err
	}
	a, err := s.Ask.Get(c.Request().Context(), callerOf(c), c.Param("id"), wait)
	if err != nil {
		return err
	}
	s.absoluteReviewURL(c, a)
	return c.JSON(http.StatusOK, approvalJSON(*a))
}

// approvalAnswer is 200 for a decided approval, 202 for a pending one.
func (s *Server) approvalAnswer(c echo.Context, a *ask.Approval) error {
	s.absoluteReviewURL(c, a)
	if a.Decided() {
		return c.JSON(http.StatusOK, approvalJSON(*a))
	}
	return c.JSON(http.StatusAccepted, approvalJSON(*a))
}

// absoluteReviewURL completes a review URL given as a path (no
// COUNTERSIGN_PUBLIC_URL) with the origin the call was made to.
func (s *Server) absoluteReviewURL(c echo.Context, a *ask.Approval) {
	if strings.HasPrefix(a.ReviewURL, "/") {
		a.ReviewURL = c.Scheme() + "://" + c.Request().Host + a.ReviewURL
	}
}

// parseWait reads a long poll's wait: a Go duration ("30s") or whole
// seconds ("30"), bounded at ask.MaxWait.
func parseWait(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		n, nerr := strconv.Atoi(v)
		if nerr != nil {
			return 0, echo.NewHTTPError(http.StatusBadRequest, "wait must be a duration such as 30s, or whole seconds")
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, echo.NewHTTPError(http.StatusBadRequest, "wait cannot be negative")
	}
	return min(d, ask.MaxWait), nil
}

// agentView is the review page's view of an approval filed through the
// approvals API; nil for any other run.
func (s *Server) agentView(c echo.Context, run *store.Run) (*templates.AgentView, error) {
	if run.Workflow != ask.Workflow || s.Ask == nil {
		return nil, nil
	}
	var in ask.Input
	if err := json.Unmarshal(run.Input, &in); err != nil {
		return nil, fmt.Errorf("decode approval input: %w", err)
	}
	v := &templates.AgentView{Revision: in.Revision}
	var fields map[string]json.RawMessage
	if len(in.Context) > 0 {
		if err := json.Unmarshal(in.Context, &fields); err != nil {
			return nil, fmt.Errorf("decode approval context: %w", err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		v.Context = append(v.Context, templates.ContextField{Key: k, Value: string(fields[k])})
	}
	earlier, err := s.Ask.Revisions(c.Request().Context(), run.ID)
	if err != nil {
		return nil, err
	}
	for _, r := range earlier {
		v.Earlier = append(v.Earlier, templates.EarlierRevision{ID: r.ID, Revision: r.Revision, Summary: r.Summary,
			Feedback: r.Feedback, DecidedBy: r.DecidedBy, CreatedAt: r.CreatedAt})
	}
	return v, nil
}
