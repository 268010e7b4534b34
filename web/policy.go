package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// maxSimulations bounds the simulations this process runs at once: each
// replays up to 90 days of requests, and a few at a time must not starve
// live evaluation of CPU.
const maxSimulations = 2

// simulations holds one token per running simulation. It is per process, as
// the CPU it protects is.
var simulations = make(chan struct{}, maxSimulations)

// canSimulate reports whether role may simulate a candidate policy: a
// simulation costs CPU and shows what a policy would let through, so it is
// for those who decide the stricter requests and for admins.
func canSimulate(role vocab.Role) bool { return role == vocab.RoleApprover || role == vocab.RoleAdmin }

// policyView loads the active policy and the versions.
func (s *Server) policyView(c echo.Context) (templates.PolicyView, error) {
	ctx := c.Request().Context()
	v := templates.PolicyView{Since: "720h", CanSimulate: canSimulate(currentUser(c).Role)}
	active, err := store.PolicyGetActive(ctx, s.Pool)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return v, err
	}
	v.Active = active
	if active != nil {
		v.Candidate = active.Source
	} else {
		v.Candidate = string(policy.Example)
	}
	v.Versions, err = store.PolicyList(ctx, s.Pool)
	return v, err
}

// handlePolicy handles the "GET /policy" route.
func (s *Server) handlePolicy(c echo.Context) error {
	v, err := s.policyView(c)
	if err != nil {
		return err
	}
	p := s.page(c, "Policy", "policy")
	if c.QueryParam("done") == "apply" {
		p.Flash = "The policy is active. Every process picks it up within moments."
	}
	return render(c, http.StatusOK, templates.Policy(p, v))
}

// candidate reads the submitted policy; problems are shown on the page.
func (s *Server) candidate(c echo.Context, v *templates.PolicyView) *policy.Policy {
	v.Candidate = c.FormValue("candidate")
	pol, err := policy.Load([]byte(v.Candidate))
	var le *policy.LoadError
	if errors.As(err, &le) {
		for _, pr := range le.Problems {
			v.Problems = append(v.Problems, pr.String())
		}
		return nil
	} else if err != nil {
		v.Problems = []string{err.Error()}
		return nil
	}
	return pol
}

// simulationTimeout bounds one simulation, below the server's write timeout
// (60 s): past that its answer could no longer be sent, and it would hold one
// of the maxSimulations slots for nothing.
var simulationTimeout = 30 * time.Second

// handlePolicySimulate handles the "POST /policy/simulate" route (approvers
// and admins). The simulation runs on the request's context, so a client that
// leaves stops it, and stops at simulationTimeout.
func (s *Server) handlePolicySimulate(c echo.Context) error {
	if !canSimulate(currentUser(c).Role) {
		return echo.NewHTTPError(http.StatusForbidden, "only approvers and admins may simulate a policy")
	}
	v, err := s.policyView(c)
	if err != nil {
		return err
	}
	pol, err := s.simulate(c, &v)
	if err != nil || pol == nil {
		return err
	}
	return render(c, http.StatusOK, templates.Policy(s.page(c, "Policy", "policy"), v))
}

// simulate reads the candidate and the window from the form and replays the
// window against it into v.Sim. It returns a nil policy once it has answered
// the request itself (the candidate or the simulation had problems, shown
// on the page).
func (s *Server) simulate(c echo.Context, v *templates.PolicyView) (*policy.Policy, error) {
	v.Since = c.FormValue("since")
	since, err := time.ParseDuration(v.Since)
	if err != nil || since <= 0 || since > 90*24*time.Hour {
		return nil, echo.NewHTTPError(http.StatusBadRequest, "the window must be a duration up to 90 days")
	}
	pol := s.candidate(c, v)
	if pol == nil {
		return nil, render(c, http.StatusUnprocessableEntity, templates.Policy(s.page(c, "Policy", "policy"), *v))
	}
	select {
	case simulations <- struct{}{}:
		defer func() { <-simulations }()
	default:
		return nil, echo.NewHTTPError(http.StatusTooManyRequests,
			fmt.Sprintf("%d simulations are already running; try again in a moment", maxSimulations))
	}
	// The grants in force apply to whichever version is active: the
	// simulation replays the candidate with them, as it would decide.
	grants, err := policystore.LiveGrants(c.Request().Context(), s.Pool, nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), simulationTimeout)
	defer cancel()
	v.Sim, err = policystore.Simulate(ctx, s.Pool, policystore.WithGrants(pol, grants), s.Now().Add(-since))
	switch {
	case errors.Is(err, policy.ErrCostLimit):
		v.Sim, v.Problems = nil, []string{"The simulation stopped: " + err.Error() + "."}
		return nil, render(c, http.StatusUnprocessableEntity, templates.Policy(s.page(c, "Policy", "policy"), *v))
	case c.Request().Context().Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		v.Sim, v.Problems = nil, []string{fmt.Sprintf("The simulation stopped: it took longer than %s; try a shorter window.", simulationTimeout)}
		return nil, render(c, http.StatusUnprocessableEntity, templates.Policy(s.page(c, "Policy", "policy"), *v))
	case ctx.Err() != nil:
		// The client left: nobody reads this answer, and it is no server fault.
		return nil, echo.NewHTTPError(http.StatusRequestTimeout, "the simulation stopped: the request was cancelled")
	case err != nil:
		return nil, err
	}
	return pol, nil
}

// handlePolicyApply handles the "POST /policy/apply" route (admins), in two
// steps. Without a confirmation it activates nothing: it simulates the
// candidate and shows that and the text diff against the active policy, with
// a form to confirm. The confirmation carries the sha256 of the candidate it
// showed, so that what is activated is exactly what was reviewed.
func (s *Server) handlePolicyApply(c echo.Context) error {
	u := currentUser(c)
	if u.Role != vocab.RoleAdmin {
		return echo.NewHTTPError(http.StatusForbidden, "only admins may activate a policy")
	}
	v, err := s.policyView(c)
	if err != nil {
		return err
	}
	if confirm := c.FormValue("confirm"); confirm != "" {
		if s.candidate(c, &v) == nil {
			return render(c, http.StatusUnprocessableEntity, templates.Policy(s.page(c, "Policy", "policy"), v))
		}
		if confirm != sha256Hex(v.Candidate) {
			return echo.NewHTTPError(http.StatusConflict, "the policy changed after its confirmation page was shown: activate it again to see the new difference")
		}
		if _, err := policystore.Apply(c.Request().Context(), s.Pool, []byte(v.Candidate), u.Email); err != nil {
			return fmt.Errorf("apply policy: %w", err)
		}
		s.Policies.Invalidate()
		return c.Redirect(http.StatusSeeOther, "/policy?done=apply")
	}
	if c.FormValue("since") == "" {
		c.Request().Form.Set("since", "720h")
	}
	if pol, err := s.simulate(c, &v); err != nil || pol == nil {
		return err
	}
	active := ""
	if v.Active != nil {
		active = v.Active.Source
	}
	v.Confirm = &templates.PolicyConfirm{SHA256: sha256Hex(v.Candidate), Diff: templates.LineDiff(active, v.Candidate),
		Unchanged: active == v.Candidate}
	return render(c, http.StatusOK, templates.Policy(s.page(c, "Activate a policy", "policy"), v))
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
