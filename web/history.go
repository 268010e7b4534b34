package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
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
	// Sign-ins outnumber everything else and say nothing of what was
	// decided: the history page shows them only when asked for, by kind or
	// with signins=1, and its links (older pages, "export this view") carry
	// signins=0 when it hid them. An export without the parameter keeps
	// every event, so that an admin's export still verifies as a chain.
	switch c.QueryParam("signins") {
	case "1":
		h.SignIns = true
		q.Set("signins", "1")
	case "0":
		f.HideKinds = signInKinds
	case "":
		if f.Kind == "" && c.Request().URL.Path == "/history" {
			f.HideKinds = signInKinds
		}
	default:
		return f, h, "", echo.NewHTTPError(http.StatusBadRequest, "signins must be 0 or 1")
	}
	if f.HideKinds != nil {
		q.Set("signins", "0")
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
	summaries, err := requestSummaries(ctx, s.Pool, events)
	if err != nil {
		return err
	}
	v := templates.HistoryView{Events: events, Filter: h, Summary: sum, Kinds: audit.Kinds, Query: q,
		Summaries: summaries, SignInsHidden: f.HideKinds != nil}
	if len(events) == historyPage {
		v.Next = strconv.FormatInt(events[len(events)-1].ID, 10)
	}
	return render(c, http.StatusOK, templates.History(s.page(c, "History", "history"), v))
}

// signInKinds are the events of signing in and out, hidden from the history
// page unless asked for.
var signInKinds = []string{string(audit.KindAuthLogin), string(audit.KindAuthLoginFailed),
	string(audit.KindAuthLoginThrottle), string(audit.KindAuthLogout)}

// requestSummaries returns the summaries of the requests that events are
// about, so that a decision's row says what was decided.
func requestSummaries(ctx context.Context, db store.DBTX, events []*store.AuditEvent) (map[string]string, error) {
	var ids []string
	for _, e := range events {
		if e.SubjectType == "request" && uuid.Validate(e.SubjectID) == nil && !slices.Contains(ids, e.SubjectID) {
			ids = append(ids, e.SubjectID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return store.RequestSummaries(ctx, db, ids)
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
