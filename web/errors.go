package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/templates"
)

// errorKind is one kind of domain error and how the web side answers it:
// the HTTP status, the API's stable code (docs/API.md lists them), and
// which message the user sees.
type errorKind struct {
	match  func(error) (msg string, ok bool)
	status int
	code   string
}

// errorKinds maps every domain error a handler may return to its answer,
// first match wins. It is the only place that knows the layers' errors and
// HTTP statuses together (wtf's codes map, pkgsite's derrors). An error
// that matches none is a server fault: 500, logged, with a plain message.
var errorKinds = []errorKind{
	{asType[*workflow.AlreadyDecidedError](), http.StatusConflict, "already_decided"},
	{fixed(workflow.ErrPayloadChanged, workflow.ErrPayloadChanged.Error()), http.StatusConflict, "payload_changed"},
	{wrapped(workflow.ErrEditNeedsReview), http.StatusUnprocessableEntity, "edit_needs_review"},
	{wrapped(ask.ErrIdempotencyConflict), http.StatusConflict, "idempotency_conflict"},
	{wrapped(ask.ErrNotRevisable), http.StatusConflict, "not_revisable"},
	{wrapped(ask.ErrRevision), http.StatusUnprocessableEntity, "invalid_revision"},
	{wrapped(ask.ErrBadRequest), http.StatusBadRequest, "bad_request"},
	{wrapped(ask.ErrTooLarge), http.StatusRequestEntityTooLarge, "too_large"},
	{wrapped(workflow.ErrForbidden), http.StatusForbidden, "forbidden"},
	// workflow.ErrNotFound is store.ErrNotFound: one "not found" in every layer.
	{fixed(store.ErrNotFound, "not found"), http.StatusNotFound, "not_found"},
	{wrapped(workflow.ErrInvalidInput), http.StatusUnprocessableEntity, "invalid"},
	{wrapped(workflow.ErrUnknownWorkflow), http.StatusUnprocessableEntity, "invalid"},
	// A value the database refused (JSON that jsonb cannot hold): the
	// caller's mistake, and the transaction wrote nothing.
	{wrapped(store.ErrInvalidInput), http.StatusUnprocessableEntity, "invalid"},
	{wrapped(workflow.ErrFinal), http.StatusConflict, "run_ended"},
	{wrapped(metrics.ErrInvalidFlag), http.StatusUnprocessableEntity, "invalid"},
	{wrapped(metrics.ErrNotCompleted), http.StatusConflict, "not_completed"},
	{wrapped(metrics.ErrAlreadyFlagged), http.StatusConflict, "already_flagged"},
	{asType[*policy.LoadError](), http.StatusUnprocessableEntity, "invalid_policy"},
	{wrapped(policystore.ErrPolicyChanged), http.StatusConflict, "policy_changed"},
	{wrapped(policystore.ErrTooManyGrants), http.StatusConflict, "too_many_grants"},
}

// wrapped matches errors wrapping target and shows the whole message, which
// says what was wrong.
func wrapped(target error) func(error) (string, bool) {
	return func(err error) (string, bool) { return err.Error(), errors.Is(err, target) }
}

// fixed matches errors wrapping target and shows msg, keeping the context
// the error was wrapped with (ids, queries) out of the answer.
func fixed(target error, msg string) func(error) (string, bool) {
	return func(err error) (string, bool) { return msg, errors.Is(err, target) }
}

// asType matches an error of type T in the chain and shows its own message.
func asType[T error]() func(error) (string, bool) {
	return func(err error) (string, bool) {
		var t T
		if !errors.As(err, &t) {
			return "", false
		}
		return t.Error(), true
	}
}

// httpError classifies an error for a response: status, a stable code for the
// API, and a message that is safe to show.
func httpError(err error) (int, string, string) {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			msg = m
		}
		return he.Code, strings.ToLower(strings.ReplaceAll(http.StatusText(he.Code), " ", "_")), msg
	}
	for _, k := range errorKinds {
		if msg, ok := k.match(err); ok {
			return k.status, k.code, msg
		}
	}
	return http.StatusInternalServerError, "internal", "something went wrong on our side; it has been logged"
}

// handleError is Echo's error handler: API errors as JSON, page errors as a
// page; only server faults are logged.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, code, msg := httpError(err)
	if status >= 500 {
		s.Logger.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	// Slack's interactions have no session to sign in to: a 401 stays a 401.
	if p := c.Request().URL.Path; strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/healthz") || p == slackPath {
		_ = c.JSON(status, apiError{Error: apiErrorBody{Code: code, Message: msg}})
		return
	}
	if status == http.StatusUnauthorized {
		_ = c.Redirect(http.StatusSeeOther, "/login")
		return
	}
	_ = render(c, status, templates.ErrorPage(s.page(c, http.StatusText(status), ""), status, forPeople(msg)))
}

// sentinelPrefixes are the words a domain error's message starts with to
// name its kind ("invalid input: a rejection needs a reason"): the API keeps
// them beside its code, a person reads only what follows.
var sentinelPrefixes = []string{workflow.ErrInvalidInput.Error() + ": ", store.ErrInvalidInput.Error() + ": ",
	metrics.ErrInvalidFlag.Error() + ": ", notice.ErrInvalid.Error() + ": "}

// forPeople writes an error's message for a page: without the error kind's
// prefix, as a sentence.
func forPeople(msg string) string {
	for _, p := range sentinelPrefixes {
		msg = strings.TrimPrefix(msg, p)
	}
	return sentence(msg)
}

// apiError is the body of every API error (the spec's Error).
type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
