package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/templates"
	"github.com/countersign/countersign/vocab"
)

// unusablePage is how many flags the list shows at once.
const unusablePage = 50

// unusableBody is the body of POST /api/v1/runs/{id}/unusable.
type unusableBody struct {
	Category vocab.UnusableCategory `json:"category"`
	Reason   string                 `json:"reason"`
}

// mayFlag refuses viewers before anything is read or written.
func mayFlag(c echo.Context) error {
	if !currentUser(c).Role.CanDecide() {
		return echo.NewHTTPError(http.StatusForbidden, "viewers cannot flag runs unusable")
	}
	return nil
}

// handleAPIRunUnusable handles the "POST /api/v1/runs/:id/unusable" route
// (scope runs:flag): flag a completed run's output as unusable.
func (s *Server) handleAPIRunUnusable(c echo.Context) error {
	if err := mayFlag(c); err != nil {
		return err
	}
	if err := checkID("the run id", c.Param("id")); err != nil {
		return err
	}
	var b unusableBody
	if err := decodeJSON(c, &b); err != nil {
		return err
	}
	u, err := metrics.FlagUnusable(c.Request().Context(), s.Pool, metrics.Flag{RunID: c.Param("id"), Category: b.Category,
		Reason: b.Reason, Actor: currentUser(c).Email})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, unusableOf(u))
}

// handleRunUnusable handles the "POST /runs/:id/unusable" route: the run
// page's form.
func (s *Server) handleRunUnusable(c echo.Context) error {
	if err := mayFlag(c); err != nil {
		return err
	}
	id := c.Param("id")
	if err := checkID("the run id", id); err != nil {
		return err
	}
	form := templates.FlagForm{Category: vocab.UnusableCategory(c.FormValue("category")), Reason: c.FormValue("reason")}
	_, err := metrics.FlagUnusable(c.Request().Context(), s.Pool, metrics.Flag{RunID: id,
		Category: form.Category, Reason: form.Reason, Actor: currentUser(c).Email})
	// A refused flag shows the run page again, the form open beside what
	// was wrong and what was typed, rather than an error page that loses
	// the reason; a run that completed no longer or was flagged meanwhile
	// says so above the page, which now shows its state.
	var status int
	switch {
	case err == nil:
		return c.Redirect(http.StatusSeeOther, "/runs/"+id+"?done=unusable")
	case errors.Is(err, metrics.ErrInvalidFlag):
		status, form.Error = http.StatusUnprocessableEntity, forPeople(err.Error())
	case errors.Is(err, metrics.ErrNotCompleted), errors.Is(err, metrics.ErrAlreadyFlagged):
		status = http.StatusConflict
	default:
		return err
	}
	p, v, verr := s.runView(c, id)
	if verr != nil {
		return verr
	}
	switch {
	case form.Error != "":
		v.Flag = form
	case errors.Is(err, metrics.ErrNotCompleted):
		p.Error = "Only a completed run can be flagged unusable: this one is " + strings.ReplaceAll(string(v.Run.Status), "_", " ") + "."
	default:
		p.Error = sentence(metrics.ErrAlreadyFlagged.Error())
	}
	return render(c, status, templates.RunDetail(p, v))
}

// sentence writes an error's message as a sentence: a capital, a full stop.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	r, n := utf8.DecodeRuneInString(msg)
	return string(unicode.ToUpper(r)) + strings.TrimSuffix(msg[n:], ".") + "."
}

// handleUnusable handles the "GET /unusable" route: completed runs flagged
// unusable, newest first, by category and workflow.
func (s *Server) handleUnusable(c echo.Context) error {
	v := templates.UnusableView{Category: vocab.UnusableCategory(c.QueryParam("category")), Workflow: c.QueryParam("workflow")}
	if v.Category != "" && !v.Category.Valid() {
		return echo.NewHTTPError(http.StatusBadRequest, "unknown category: use one of "+vocab.Join(vocab.UnusableCategories(), ", "))
	}
	if len(v.Workflow) > 200 {
		return echo.NewHTTPError(http.StatusBadRequest, "the workflow name is too long")
	}
	f := store.UnusableFilter{Category: v.Category, Workflow: v.Workflow, Limit: unusablePage + 1}
	var cur timeCursor
	paged, err := readAfter(c, &cur, &cur.ID)
	if err != nil {
		return err
	}
	if paged {
		f.BeforeAt, f.BeforeID = cur.T, cur.ID
	}
	if v.Flags, err = store.UnusableList(c.Request().Context(), s.Pool, f); err != nil {
		return err
	}
	if len(v.Flags) > unusablePage {
		v.Flags = v.Flags[:unusablePage]
		last := v.Flags[len(v.Flags)-1]
		q := url.Values{"after": {nextTimeCursor(last.CreatedAt, last.RunID)}}
		if v.Category != "" {
			q.Set("category", string(v.Category))
		}
		if v.Workflow != "" {
			q.Set("workflow", v.Workflow)
		}
		v.Next = q.Encode()
	}
	return render(c, http.StatusOK, templates.UnusableList(s.page(c, "Unusable runs", "unusable"), v))
}

// handleMetrics handles the "GET /metrics" route on the main listener (a
// token with metrics:read); COUNTERSIGN_METRICS_ADDR serves the same
// without a token on a listener of its own.
// A refusal is plain text, as a scraper reads it, not the console's sign-in
// page that other pages' 401 leads to.
func (s *Server) handleMetrics(c echo.Context) error {
	serve := func(c echo.Context) error {
		s.metrics.ServeHTTP(c.Response(), c.Request())
		return nil
	}
	err := s.requireToken(requireScope(account.ScopeMetricsRead)(serve))(c)
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return c.String(he.Code, fmt.Sprint(he.Message)+"\n")
	}
	return err
}
