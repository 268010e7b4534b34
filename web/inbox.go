package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"golang.org/x/sync/errgroup"

	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

const inboxPage = 50

// maxFilterValue bounds a free-text filter (workflow, rule): no real name
// is longer, and a longer value is a mistake to refuse, not to search for.
const maxFilterValue = 200

// inboxFilterKeys are the query parameters of the inbox's filters, in the
// order its canonical query string (links, saved filters) lists them.
var inboxFilterKeys = []string{"tier", "workflow", "rule", "age", "can", "claimed"}

// parseInboxFilter validates the inbox's filters in q. A bad value is the
// client's mistake: a 400 naming the parameter, before anything is read.
func parseInboxFilter(q url.Values) (templates.InboxFilter, time.Duration, error) {
	f := templates.InboxFilter{Workflow: q.Get("workflow"), Rule: q.Get("rule"), Tier: q.Get("tier"), Age: q.Get("age"),
		CanDecide: q.Get("can") != "", ClaimedByMe: q.Get("claimed") != ""}
	bad := func(msg string) (templates.InboxFilter, time.Duration, error) {
		return f, 0, echo.NewHTTPError(http.StatusBadRequest, msg)
	}
	if f.Tier != "" && !slices.Contains(templates.InboxTiers, vocab.Tier(f.Tier)) {
		return bad("tier must be explicit or batched")
	}
	if utf8.RuneCountInString(f.Workflow) > maxFilterValue || utf8.RuneCountInString(f.Rule) > maxFilterValue {
		return bad("workflow and rule are names of at most 200 characters")
	}
	if v := q.Get("can"); v != "" && v != "1" {
		return bad(`can must be "1" (only requests I can decide)`)
	}
	if v := q.Get("claimed"); v != "" && v != "me" {
		return bad(`claimed must be "me" (only requests I claimed)`)
	}
	var age time.Duration
	if f.Age != "" {
		d, err := time.ParseDuration(f.Age)
		if err != nil || d < 0 {
			return bad("age must be a duration such as 1h")
		}
		age = d
	}
	return f, age, nil
}

// encode is the filter's canonical query string: only the filters set, in a
// fixed order, so that saved filters and links compare equal.
func encodeInboxFilter(f templates.InboxFilter) string {
	vals := map[string]string{"workflow": f.Workflow, "rule": f.Rule, "tier": f.Tier, "age": f.Age}
	if f.CanDecide {
		vals["can"] = "1"
	}
	if f.ClaimedByMe {
		vals["claimed"] = "me"
	}
	var parts []string
	for _, k := range inboxFilterKeys {
		if v := vals[k]; v != "" {
			parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(v))
		}
	}
	return strings.Join(parts, "&")
}

// inboxQuery reads and validates the inbox's filters and page.
func (s *Server) inboxQuery(c echo.Context) (store.InboxParams, templates.InboxFilter, string, error) {
	f, age, err := parseInboxFilter(c.QueryParams())
	u := currentUser(c)
	p := store.InboxParams{Workflow: f.Workflow, Rule: f.Rule, Tier: f.Tier, OlderThan: age, Limit: inboxPage, Now: s.Now(),
		Actor: actorOf(u).Name, ActorRole: u.Role, CanDecide: f.CanDecide, ClaimedByMe: f.ClaimedByMe}
	if !u.Role.CanDecide() {
		// A viewer decides nothing, whatever roles a rule names.
		p.ActorRole = ""
	}
	if err != nil {
		return p, f, "", err
	}
	var cur store.InboxCursor
	if ok, err := readAfter(c, &cur, &cur.ID); err != nil {
		return p, f, "", err
	} else if ok {
		p.After = &cur
	}
	return p, f, encodeInboxFilter(f), nil
}

// inboxResults reads what the live part of the inbox shows: the rows with
// what the signed-in user may do with each, the counts under the filter, and
// how many requests the filter hides when it leaves none.
func (s *Server) inboxResults(c echo.Context, params store.InboxParams, filter templates.InboxFilter, query string) (templates.InboxResults, error) {
	ctx := c.Request().Context()
	u := currentUser(c)
	v := templates.InboxResults{Filter: filter, Query: query, Live: params.After == nil, Me: actorOf(u).Name}
	if t, ok := c.Get("csrf").(string); ok {
		v.CSRF = t
	}
	// The rows and the counts are independent reads: taken at once, on two
	// connections, a live refresh waits for one round trip, not two.
	var rows []store.InboxRow
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		rows, err = store.RequestListInbox(gctx, s.Pool, params)
		return err
	})
	g.Go(func() (err error) {
		v.Counts, err = store.RequestCountInbox(gctx, s.Pool, params)
		return err
	})
	if err := g.Wait(); err != nil {
		return v, err
	}
	if len(rows) == 0 && filter.Active() {
		all, err := store.RequestCountInbox(ctx, s.Pool, store.InboxParams{Now: params.Now})
		if err != nil {
			return v, err
		}
		for _, n := range all {
			v.Hidden += n.Count
			v.HiddenCapped = v.HiddenCapped || n.Capped
		}
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.Request.ID
	}
	var claims map[string]*store.Claim
	var voted map[string]bool
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		claims, err = store.ClaimListLive(gctx, s.Pool, ids, params.Now)
		return err
	})
	g.Go(func() (err error) {
		voted, err = store.VoteListByActor(gctx, s.Pool, v.Me, ids)
		return err
	})
	if err := g.Wait(); err != nil {
		return v, err
	}
	for _, r := range rows {
		item := templates.InboxItem{Request: r.Request, Claim: claims[r.Request.ID], Facts: actionFacts(r.Request.Action)}
		item.WhyNot, item.WhyNotShort = whyNot(u, r.Request, voted[r.Request.ID])
		v.Rows = append(v.Rows, item)
	}
	if len(rows) == inboxPage {
		v.Next = encodeCursor(rows[len(rows)-1].Cursor)
	}
	return v, nil
}

// whyNot says why u cannot decide req now, at length and in two words for
// the row, or "" when u can. It mirrors the checks of approval's authorize
// and vote, so that the inbox marks what a decision would refuse.
func whyNot(u *store.User, req *store.Request, voted bool) (long, short string) {
	actor := actorOf(u)
	switch {
	case !u.Role.CanDecide():
		return "Your role (" + string(u.Role) + ") may view requests but not decide them.", "view only"
	case !workflow.CanDecide(req, actor.Roles):
		return "This request needs one of the roles " + vocab.Join(workflow.AllowedRoles(req), ", ") + "; you are " + string(u.Role) + ".", "not your role"
	case req.StartedBy == actor.Name:
		return "You started this run, so someone else must approve it.", "your run"
	case voted:
		return "You have already approved this request; it needs another approver.", "you approved"
	}
	return "", ""
}

// actionFacts reads the risk, reversibility and amount the proposed action
// claims, for the row. A field the action does not carry stays unset, so the
// row shows nothing rather than a default that would read as a claim.
func actionFacts(raw json.RawMessage) templates.ActionFacts {
	var a struct {
		Risk          string         `json:"risk"`
		Reversible    *bool          `json:"reversible"`
		EstimatedCost float64        `json:"estimated_cost"`
		Params        map[string]any `json:"params"`
	}
	if json.Unmarshal(raw, &a) != nil {
		return templates.ActionFacts{}
	}
	f := templates.ActionFacts{Risk: a.Risk, Reversible: a.Reversible, Cost: a.EstimatedCost}
	if amt, ok := a.Params["amount"]; ok {
		switch n := amt.(type) {
		case float64:
			f.Amount = strconv.FormatFloat(n, 'f', 2, 64)
		case string:
			if _, err := strconv.ParseFloat(n, 64); err == nil && len(n) <= 32 {
				f.Amount = n
			}
		}
		if cur, ok := a.Params["currency"].(string); ok && f.Amount != "" && len(cur) <= 8 {
			f.Amount += " " + cur
		}
	}
	return f
}

// handleInbox handles the "GET /" route: requests waiting for a human.
func (s *Server) handleInbox(c echo.Context) error {
	ctx := c.Request().Context()
	params, filter, query, err := s.inboxQuery(c)
	if err != nil {
		return err
	}
	res, err := s.inboxResults(c, params, filter, query)
	if err != nil {
		return err
	}
	v := templates.InboxView{InboxResults: res, Workflows: s.Engine.Registry().Names()}
	if pol, err := s.Policies.Active(ctx); err == nil {
		for _, r := range pol.Rules {
			v.Rules = append(v.Rules, r.Name)
		}
		v.Rules = append(v.Rules, "default-explicit")
	}
	if filter.Rule != "" && !slices.Contains(v.Rules, filter.Rule) {
		v.Rules = append(v.Rules, filter.Rule)
	}
	if v.Saved, err = store.SavedFilterList(ctx, s.Pool, currentUser(c).ID); err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.Inbox(s.page(c, "Inbox", "inbox"), v))
}

// handleInboxRows handles the "GET /inbox/rows" route: the first page's
// results (counts, rows, empty state), for the live refresh.
func (s *Server) handleInboxRows(c echo.Context) error {
	params, filter, query, err := s.inboxQuery(c)
	if err != nil {
		return err
	}
	params.After = nil
	res, err := s.inboxResults(c, params, filter, query)
	if err != nil {
		return err
	}
	return render(c, http.StatusOK, templates.InboxLive(res))
}

// backToInbox is where a claim or saved-filter form returns: the inbox with
// the filter it was sent from, validated again so that the form cannot send
// the browser anywhere else.
func backToInbox(c echo.Context) string {
	back := c.FormValue("back")
	q, err := url.ParseQuery(strings.TrimPrefix(back, "/?"))
	if !strings.HasPrefix(back, "/?") || err != nil {
		return "/"
	}
	f, _, err := parseInboxFilter(q)
	if err != nil {
		return "/"
	}
	return "/?" + encodeInboxFilter(f)
}

// claimChanged tells every open inbox that a claim moved, so that others see
// who reviews what without reloading.
func (s *Server) claimChanged(c echo.Context, requestID string) error {
	return notify.Send(c.Request().Context(), s.Pool, notify.Message{Type: notify.KindClaim, ID: requestID})
}

// handleClaim handles the "POST /requests/:id/claim" route: "I'm reviewing
// this". A live claim by someone else is left alone (the inbox shows whose
// it is); a claim never blocks a decision, so viewers too may not claim.
func (s *Server) handleClaim(c echo.Context) error {
	u := currentUser(c)
	if !u.Role.CanDecide() {
		return echo.NewHTTPError(http.StatusForbidden, "viewers cannot claim requests")
	}
	id := c.Param("id")
	if _, err := store.ClaimSet(c.Request().Context(), s.Pool, id, actorOf(u).Name, s.Now()); err != nil {
		return err
	}
	if err := s.claimChanged(c, id); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, backToInbox(c))
}

// handleClaimRelease handles the "POST /requests/:id/unclaim" route.
func (s *Server) handleClaimRelease(c echo.Context) error {
	id := c.Param("id")
	if err := store.ClaimRelease(c.Request().Context(), s.Pool, id, actorOf(currentUser(c)).Name); err != nil {
		return err
	}
	if err := s.claimChanged(c, id); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, backToInbox(c))
}

// handleClaimRenew handles the "POST /requests/:id/claim/renew" route: the
// review page pings it while open and in use (with the X-CSRF-Token header),
// so that the claimer's claim lasts while they work. It answers 200 with
// {"renewed": true} when the user's live claim was renewed and {"renewed":
// false} when they hold none (never claimed, lapsed, or another's): every
// review page pings, and most requests are claimed by nobody, which is no
// error.
func (s *Server) handleClaimRenew(c echo.Context) error {
	err := store.ClaimRenew(c.Request().Context(), s.Pool, c.Param("id"), actorOf(currentUser(c)).Name, s.Now())
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return c.JSON(http.StatusOK, map[string]bool{"renewed": err == nil})
}

// handleSavedFilterSave handles the "POST /inbox/filters" route: name the
// current filter set. The query is validated as the inbox would read it and
// stored in canonical form.
func (s *Server) handleSavedFilterSave(c echo.Context) error {
	name := strings.TrimSpace(c.FormValue("name"))
	if n := utf8.RuneCountInString(name); n == 0 || n > 60 {
		return echo.NewHTTPError(http.StatusBadRequest, "a saved filter needs a name of 1 to 60 characters")
	}
	q, err := url.ParseQuery(c.FormValue("query"))
	if err != nil || len(c.FormValue("query")) > 1000 {
		return echo.NewHTTPError(http.StatusBadRequest, "the filter to save is malformed")
	}
	f, _, err := parseInboxFilter(q)
	if err != nil {
		return err
	}
	if !f.Active() {
		return echo.NewHTTPError(http.StatusBadRequest, "choose at least one filter before saving it")
	}
	query := encodeInboxFilter(f)
	if _, err := store.SavedFilterSave(c.Request().Context(), s.Pool, currentUser(c).ID, name, query); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/?"+query)
}

// handleSavedFilterDelete handles the "POST /inbox/filters/:id/delete" route.
// Another user's filter is not found.
func (s *Server) handleSavedFilterDelete(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil {
		return echo.NewHTTPError(http.StatusNotFound, "not found")
	}
	if err := store.SavedFilterDelete(c.Request().Context(), s.Pool, currentUser(c).ID, id); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, backToInbox(c))
}
