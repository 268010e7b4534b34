package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// reviewView loads everything the review page shows.
func (s *Server) reviewView(c echo.Context, id string) (templates.ReviewView, error) {
	ctx := c.Request().Context()
	var v templates.ReviewView
	req, err := store.RequestGet(ctx, s.Pool, id)
	if err != nil {
		return v, err
	}
	v.Request = req
	if err := json.Unmarshal(req.Action, &v.Action); err != nil {
		return v, fmt.Errorf("decode action: %w", err)
	}
	v.Changes = templates.Changes(v.Action.Current, v.Action.Params)
	if v.Run, err = store.RunGet(ctx, s.Pool, req.RunID); err != nil {
		return v, err
	}
	if v.Steps, err = store.StepList(ctx, s.Pool, req.RunID); err != nil {
		return v, err
	}
	if v.Votes, err = store.VoteList(ctx, s.Pool, req.ID); err != nil {
		return v, err
	}
	if v.Agent, err = s.agentView(c, v.Run); err != nil {
		return v, err
	}
	if d, err := store.DecisionGetByRequest(ctx, s.Pool, req.ID); err == nil {
		v.Decision = d
	} else if !errors.Is(err, store.ErrNotFound) {
		return v, err
	}
	u := currentUser(c)
	switch {
	case !u.Role.CanDecide():
		v.WhyNot = "Viewers can read requests but not decide them."
	case !workflow.CanDecide(req, actorOf(u).Roles):
		v.WhyNot = "This request needs one of the roles " + vocab.Join(workflow.AllowedRoles(req), ", ") + "."
	default:
		v.CanDecide = true
	}
	return v, nil
}

// handleReview handles the "GET /requests/:id" route.
func (s *Server) handleReview(c echo.Context) error {
	v, err := s.reviewView(c, c.Param("id"))
	if err != nil {
		return err
	}
	p := s.page(c, v.Request.Summary, "inbox")
	p.Flash = flashes[c.QueryParam("done")]
	return render(c, http.StatusOK, templates.Review(p, v))
}

var flashes = map[string]string{
	string(vocab.VerdictApprove):        "Approved. The run has resumed.",
	string(vocab.VerdictEdit):           "Approved with your edits. The run has resumed.",
	string(vocab.VerdictReject):         "Rejected. The run has ended.",
	string(vocab.VerdictRequestChanges): "Changes requested. The run will propose again.",
	"vote":                              "Your approval is recorded; the rule needs more approvers.",
}

// handleDecide handles the "POST /requests/:id/decision" route. A refused
// decision shows the page again with the reason and what the reviewer typed.
func (s *Server) handleDecide(c echo.Context) error {
	id := c.Param("id")
	u := currentUser(c)
	form := templates.DecisionForm{Verdict: vocab.Verdict(c.FormValue("verdict")), Reason: c.FormValue("reason"),
		Comment: c.FormValue("comment"), EditedParams: c.FormValue("edited_params")}
	p := workflow.DecideParams{RequestID: id, Actor: actorOf(u),
		Verdict: form.Verdict, Reason: form.Reason, Comment: form.Comment, PayloadHash: c.FormValue("payload_hash")}
	var err error
	if form.Verdict == vocab.VerdictEdit {
		if err = json.Unmarshal([]byte(form.EditedParams), &p.EditedParams); err != nil || p.EditedParams == nil {
			err = fmt.Errorf("%w: the edited parameters are not a JSON object", workflow.ErrInvalidInput)
		}
	}
	var res *workflow.DecideResult
	if err == nil {
		res, err = s.Engine.Decide(c.Request().Context(), p)
	}
	if err != nil {
		status, _, msg := httpError(err)
		if status >= 500 {
			return err
		}
		v, verr := s.reviewView(c, id)
		if verr != nil {
			return verr
		}
		if errors.Is(err, workflow.ErrPayloadChanged) {
			form = templates.DecisionForm{} // what they typed was about the old payload
		}
		form.Error = msg
		v.Form = form
		return render(c, status, templates.Review(s.page(c, v.Request.Summary, "inbox"), v))
	}
	done := string(form.Verdict)
	if res.Decision == nil {
		done = "vote"
	}
	return c.Redirect(http.StatusSeeOther, "/requests/"+id+"?done="+done)
}
