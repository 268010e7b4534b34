package web

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

const historyPage = 100

// auditFilter reads the history filters shared by the page, the exports and
// the API, as typed (for the form) and the query string that repeats them.
func auditFilter(c echo.Context) (store.AuditFilter, templates.HistoryFilter, string, error) {
	h := templates.HistoryFilter{Actor: c.QueryParam("actor"), Kind: c.QueryParam("kind"), Verdict: c.QueryParam("verdict"),
		Workflow: c.QueryParam("workflow"), Rule: c.QueryParam("rule"), Tier: c.QueryParam("tier"), Run: c.QueryParam("run"),
		Since: c.QueryParam("since"), Until: c.QueryParam("until")}
	f, err := audit.ParseFilter(c.QueryParam)
	if err != nil {
		return f, h, "", echo.NewHTTPError(http.StatusBadRequest, err.Error())
	}
	// Failed sign-ins name what someone typed: admins only, on every view.
	u := currentUser(c)
	f.Redact = u == nil || u.Role != vocab.RoleAdmin
	q := url.Values{}
	for _, k := range audit.FilterNames {
		if v := c.QueryParam(k); v != "" {
			q.Set(k, v)
		}
	}
	return f, h, q.Encode(), nil
}

func beforeParam(c echo.Context) (int64, error) {
	b := c.QueryParam("before")
	if b == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(b, 10, 64)
	if err != nil || n <= 0 {
		return 0, echo.NewHTTPError(http.StatusBadRequest, "before must be an event id")
	}
	return n, nil
}

// handleHistory handles the "GET /history" route: every audit event, newest
// first, filtered, with a summary of the decisions among them.
func (s *Server) handleHistory(c echo.Context) error {
	ctx := c.Request().Context()
	f, h, q, err := auditFilter(c)
	if err != nil {
		return err
	}
	before, err := beforeParam(c)
	if err != nil {
		return err
	}
	events, err := store.AuditList(ctx, s.Pool, f, before, historyPage)
	if err != nil {
		return err
	}
	sum, err := store.AuditSummarize(ctx, s.Pool, f)
	if err != nil {
		return err
	}
	v := templates.HistoryView{Events: events, Filter: h, Summary: sum, Kinds: audit.Kinds, Query: q}
	if len(events) == historyPage {
		v.Next = strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	return render(c, http.StatusOK, templates.History(s.page(c, "History", "history"), v))
}

// exportWriteWindow is how long an export may take to write the rows between
// two flushes (500): the server's write timeout, per stretch.
const exportWriteWindow = 60 * time.Second

// handleHistoryExport handles the "GET /history/export" and
// "GET /api/v1/audit/export" routes: the filtered view, streamed.
func (s *Server) handleHistoryExport(c echo.Context) error {
	f, _, _, err := auditFilter(c)
	if err != nil {
		return err
	}
	format := c.QueryParam("format")
	contentType := map[string]string{audit.CSV: "text/csv; charset=utf-8", audit.JSONL: "application/x-ndjson"}[format]
	if contentType == "" {
		return echo.NewHTTPError(http.StatusBadRequest, "format must be csv or jsonl")
	}
	w := c.Response()
	// The server's write timeout bounds a whole response, and a large export
	// takes longer: each stretch of rows gets its own window instead, so an
	// export is cut off only when one stretch stalls.
	rc := http.NewResponseController(w)
	extend := func() {
		if err := rc.SetWriteDeadline(time.Now().Add(exportWriteWindow)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.Logger.Warn("extend the export's write deadline", "err", err)
		}
	}
	extend()
	w.Header().Set(echo.HeaderContentType, contentType)
	w.Header().Set(echo.HeaderContentDisposition, `attachment; filename="countersign-audit-`+s.Now().UTC().Format("20060102T150405")+`.`+format+`"`)
	w.WriteHeader(http.StatusOK)
	_, err = audit.Export(c.Request().Context(), s.Pool, f, format, w, func() {
		w.Flush()
		extend()
	})
	if err != nil {
		// The status line is gone; end the body so that the reader sees a
		// truncated file rather than a complete-looking one.
		s.Logger.Error("audit export", "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// handleAPIAudit handles the "GET /api/v1/audit" route.
func (s *Server) handleAPIAudit(c echo.Context) error {
	f, _, _, err := auditFilter(c)
	if err != nil {
		return err
	}
	before, err := beforeParam(c)
	if err != nil {
		return err
	}
	limit, err := apiLimit(c)
	if err != nil {
		return err
	}
	events, err := store.AuditList(c.Request().Context(), s.Pool, f, before, limit)
	if err != nil {
		return err
	}
	lines := make([]audit.Line, len(events))
	for i, e := range events {
		lines[i] = audit.LineOf(e)
	}
	out := auditPageJSON{Events: lines}
	if len(events) == limit {
		out.Next = strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	return c.JSON(http.StatusOK, out)
}
