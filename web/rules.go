package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// maxGrantsShown bounds the grants the rules page lists.
const maxGrantsShown = 100

// maxRuleStats bounds the rule statistics this process computes at once:
// each reads up to store.MaxStatsRequests requests, and every signed-in user
// may ask for them.
const maxRuleStats = 2

var ruleStats = make(chan struct{}, maxRuleStats)

// rulesQuery reads the window and the proposals' threshold from the query
// (GET) or the form (POST), refusing anything else with a 400.
func (s *Server) rulesQuery(c echo.Context) (templates.RulesView, error) {
	v := templates.RulesView{Window: c.FormValue("window"), MinDecided: policystore.DefaultMinDecided, Now: s.Now(),
		CanReview: canSimulate(currentUser(c).Role)}
	if v.Window == "" {
		v.Window = "168h"
	}
	if !slices.Contains(templates.RuleWindows, v.Window) {
		return v, echo.NewHTTPError(http.StatusBadRequest, "the window must be one of 24h, 168h or 720h")
	}
	if m := c.FormValue("min"); m != "" {
		n, err := strconv.Atoi(m)
		if err != nil || n < policystore.MinMinDecided || n > policystore.MaxMinDecided {
			return v, echo.NewHTTPError(http.StatusBadRequest,
				fmt.Sprintf("the decided actions a proposal needs must be a whole number from %d to %d", policystore.MinMinDecided, policystore.MaxMinDecided))
		}
		v.MinDecided = n
	}
	window, _ := time.ParseDuration(v.Window) // one of RuleWindows
	v.Since = v.Now.Add(-window)
	return v, nil
}

// activeBase returns the active version and its compiled policy, without
// grants: proposals narrow the rules an admin wrote, never a grant.
func (s *Server) activeBase(ctx context.Context) (*store.PolicyVersion, *policy.Policy, error) {
	active, err := store.PolicyGetActive(ctx, s.Pool)
	if errors.Is(err, store.ErrNotFound) {
		return nil, policy.Default(), nil
	}
	if err != nil {
		return nil, nil, err
	}
	base, err := policystore.Compile(active)
	if err != nil {
		return nil, nil, err
	}
	return active, base, nil
}

// statsSlot takes one of the maxRuleStats slots, or answers 429, and
// returns a context bounded by the statistics' time limit and the release.
func statsSlot(c echo.Context) (context.Context, func(), error) {
	select {
	case ruleStats <- struct{}{}:
	default:
		return nil, nil, echo.NewHTTPError(http.StatusTooManyRequests,
			fmt.Sprintf("%d rule statistics are already being computed; try again in a moment", maxRuleStats))
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), simulationTimeout)
	return ctx, func() { cancel(); <-ruleStats }, nil
}

// statsErr turns the statistics' own time limit into a 503.
func statsErr(ctx context.Context, c echo.Context, err error) error {
	if err != nil && ctx.Err() != nil && c.Request().Context().Err() == nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable,
			fmt.Sprintf("the statistics took longer than %s; try a shorter window", simulationTimeout))
	}
	return err
}

// rulesView fills v with the statistics, the proposals and the grants.
func (s *Server) rulesView(c echo.Context, v *templates.RulesView) error {
	ctx, release, err := statsSlot(c)
	if err != nil {
		return err
	}
	defer release()
	w, err := store.RuleStats(ctx, s.Pool, v.Since, policystore.FastApproval, store.MaxStatsRequests)
	if err != nil {
		return statsErr(ctx, c, err)
	}
	v.Stats, v.Truncated, v.Capped, v.From = w.Stats, w.Truncated, w.Capped, w.From
	_, base, err := s.activeBase(ctx)
	if err != nil {
		return err
	}
	if v.Proposals, err = policystore.Proposals(ctx, s.Pool, base, v.Stats, w.From, v.MinDecided); err != nil {
		return err
	}
	v.Grants, err = store.GrantListRecent(ctx, s.Pool, maxGrantsShown)
	return err
}

// handleRules handles the "GET /policy/rules" route (every signed-in user
// reads it; approvers and admins review proposals; admins activate them).
func (s *Server) handleRules(c echo.Context) error {
	v, err := s.rulesQuery(c)
	if err != nil {
		return err
	}
	if err := s.rulesView(c, &v); err != nil {
		return err
	}
	p := s.page(c, "Rules learned from decisions", "policy")
	switch c.QueryParam("done") {
	case policystore.ModeRule:
		p.Flash = "The narrower rule is active in a new policy version. Every process picks it up within moments."
	case policystore.ModeGrant:
		p.Flash = "The grant is in force. Every process picks it up within moments; it ends by itself at its expiry."
	case "revoke":
		p.Flash = "The grant is revoked."
	}
	return render(c, http.StatusOK, templates.Rules(p, v))
}

// promotion regenerates, from the database, the proposal the form names and
// makes it concrete, then simulates it over the window: nothing of the rule
// is taken from the form but the choices (rule and kind, mode, tier, length)
// the page offered.
func (s *Server) promotion(c echo.Context, v *templates.RulesView) (*templates.RuleReview, error) {
	ctx := c.Request().Context()
	active, base, err := s.activeBase(ctx)
	if err != nil {
		return nil, err
	}
	// Regenerating the proposal reads the window's statistics: it takes a
	// statistics slot and their time limit, as the page does.
	sctx, release, err := statsSlot(c)
	if err != nil {
		return nil, err
	}
	prop, err := policystore.Propose(sctx, s.Pool, base, c.FormValue("rule"), c.FormValue("kind"), v.Since, v.MinDecided)
	err = statsErr(sctx, c, err)
	release()
	if err != nil {
		return nil, err
	}
	mode, tier := c.FormValue("mode"), vocab.Tier(c.FormValue("tier"))
	var length time.Duration
	review := &templates.RuleReview{}
	if mode == policystore.ModeGrant {
		review.Duration = c.FormValue("duration")
		if length, err = time.ParseDuration(review.Duration); err != nil {
			return nil, echo.NewHTTPError(http.StatusBadRequest, "the grant's length must be 1, 7 or 30 days")
		}
	}
	grants, err := policystore.LiveGrants(ctx, s.Pool, nil)
	if err != nil {
		return nil, err
	}
	if review.Promotion, err = policystore.Promote(prop, active, base, grants, mode, tier, s.Now(), length); err != nil {
		return nil, err
	}
	select {
	case simulations <- struct{}{}:
		defer func() { <-simulations }()
	default:
		return nil, echo.NewHTTPError(http.StatusTooManyRequests,
			fmt.Sprintf("%d simulations are already running; try again in a moment", maxSimulations))
	}
	sctx, cancel := context.WithTimeout(ctx, simulationTimeout)
	defer cancel()
	review.Sim, err = policystore.Simulate(sctx, s.Pool, review.Promotion.Candidate, prop.Since)
	switch {
	case errors.Is(err, policy.ErrCostLimit):
		return nil, echo.NewHTTPError(http.StatusUnprocessableEntity, "The simulation stopped: "+err.Error()+".")
	case ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded):
		return nil, echo.NewHTTPError(http.StatusUnprocessableEntity,
			fmt.Sprintf("The simulation stopped: it took longer than %s; try a shorter window.", simulationTimeout))
	case ctx.Err() != nil:
		return nil, echo.NewHTTPError(http.StatusRequestTimeout, "the simulation stopped: the request was cancelled")
	case err != nil:
		return nil, err
	}
	review.Outcome = policystore.Outcome(review.Sim, review.Promotion.Rule.Name)
	return review, nil
}

// handleRuleReview handles the "POST /policy/rules/review" route (approvers
// and admins): the proposal made concrete, its simulation, and for admins
// the form that activates it.
func (s *Server) handleRuleReview(c echo.Context) error {
	if !canSimulate(currentUser(c).Role) {
		return echo.NewHTTPError(http.StatusForbidden, "only approvers and admins may simulate a proposal")
	}
	v, err := s.rulesQuery(c)
	if err != nil {
		return err
	}
	if v.Review, err = s.promotion(c, &v); err != nil {
		return err
	}
	if err := s.rulesView(c, &v); err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.Rules(s.page(c, "Review a proposal", "policy"), v))
}

// handleRuleActivate handles the "POST /policy/rules/activate" route
// (admins). It regenerates the proposal and its simulation as the review
// did and activates it only when it is what the review showed (the form's
// sha256), in one transaction with its audit event.
func (s *Server) handleRuleActivate(c echo.Context) error {
	u := currentUser(c)
	if u.Role != vocab.RoleAdmin {
		return echo.NewHTTPError(http.StatusForbidden, "only admins may activate a proposal")
	}
	v, err := s.rulesQuery(c)
	if err != nil {
		return err
	}
	review, err := s.promotion(c, &v)
	if err != nil {
		return err
	}
	pr := review.Promotion
	if c.FormValue("confirm") != pr.SHA256 {
		return fmt.Errorf("the proposal is no longer what its review showed: %w", policystore.ErrPolicyChanged)
	}
	ctx := c.Request().Context()
	if pr.Mode == policystore.ModeGrant {
		_, err = policystore.ActivateGrant(ctx, s.Pool, pr, review.Sim, u.Email)
	} else {
		_, err = policystore.ActivateRule(ctx, s.Pool, pr, review.Sim, u.Email)
	}
	if err != nil {
		return err
	}
	s.Policies.Invalidate()
	return c.Redirect(http.StatusSeeOther, "/policy/rules?done="+pr.Mode)
}

// handleGrantRevoke handles the "POST /policy/grants/:id/revoke" route (admins).
func (s *Server) handleGrantRevoke(c echo.Context) error {
	u := currentUser(c)
	if u.Role != vocab.RoleAdmin {
		return echo.NewHTTPError(http.StatusForbidden, "only admins may revoke a grant")
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return echo.NewHTTPError(http.StatusNotFound, "no such grant")
	}
	if _, err := policystore.RevokeGrant(c.Request().Context(), s.Pool, id, u.Email); err != nil {
		return err
	}
	s.Policies.Invalidate()
	return c.Redirect(http.StatusSeeOther, "/policy/rules?done=revoke")
}
