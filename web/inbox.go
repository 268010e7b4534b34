package web

import (
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

const inboxPage = 50

// inboxQuery reads and validates the inbox's filters and page.
func (s *Server) inboxQuery(c echo.Context) (store.InboxParams, templates.InboxFilter, string, error) {
	f := templates.InboxFilter{Workflow: c.QueryParam("workflow"), Rule: c.QueryParam("rule"),
		Tier: c.QueryParam("tier"), Age: c.QueryParam("age")}
	p := store.InboxParams{Workflow: f.Workflow, Rule: f.Rule, Tier: f.Tier, Limit: inboxPage, Now: s.Now()}
	if f.Tier != "" && !slices.Contains(templates.InboxTiers, vocab.Tier(f.Tier)) {
		return p, f, "", echo.NewHTTPError(http.StatusBadRequest, "tier must be explicit or batched")
	}
	if f.Age != "" {
		d, err := time.ParseDuration(f.Age)
		if err != nil || d < 0 {
			return p, f, "", echo.NewHTTPError(http.StatusBadRequest, "age must be a duration such as 1h")
		}
		p.OlderThan = d
	}
	var cur store.InboxCursor
	if ok, err := readAfter(c, &cur, &cur.ID); err != nil {
		return p, f, "", err
	} else if ok {
		p.After = &cur
	}
	q := url.Values{}
	for k, v := range map[string]string{"workflow": f.Workflow, "rule": f.Rule, "tier": f.Tier, "age": f.Age} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return p, f, q.Encode(), nil
}

// handleInbox handles the "GET /" route: requests waiting for a human.
func (s *Server) handleInbox(c echo.Context) error {
	ctx := c.Request().Context()
	params, filter, query, err := s.inboxQuery(c)
	if err != nil {
		return err
	}
	rows, err := store.RequestListInbox(ctx, s.Pool, params)
	if err != nil {
		return err
	}
	counts, err := store.RequestCountPending(ctx, s.Pool)
	if err != nil {
		return err
	}
	v := templates.InboxView{Counts: counts, Filter: filter, Query: query, Live: params.After == nil,
		Workflows: s.Engine.Registry().Names()}
	if pol, err := s.Policies.Active(ctx); err == nil {
		for _, r := range pol.Rules {
			v.Rules = append(v.Rules, r.Name)
		}
		v.Rules = append(v.Rules, "default-explicit")
	}
	for _, r := range rows {
		v.Rows = append(v.Rows, r.Request)
	}
	if len(rows) == inboxPage {
		v.Next = encodeCursor(rows[len(rows)-1].Cursor)
	}
	if filter.Rule != "" && !slices.Contains(v.Rules, filter.Rule) {
		v.Rules = append(v.Rules, filter.Rule)
	}
	return render(c, http.StatusOK, templates.Inbox(s.page(c, "Inbox", "inbox"), v))
}

// handleInboxRows handles the "GET /inbox/rows" route: the first page's rows,
// for the live refresh.
func (s *Server) handleInboxRows(c echo.Context) error {
	params, _, _, err := s.inboxQuery(c)
	if err != nil {
		return err
	}
	params.After = nil
	rows, err := store.RequestListInbox(c.Request().Context(), s.Pool, params)
	if err != nil {
		return err
	}
	reqs := make([]*store.Request, len(rows))
	for i, r := range rows {
		reqs[i] = r.Request
	}
	return render(c, http.StatusOK, templates.InboxRows(reqs))
}
