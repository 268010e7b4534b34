// Package web is Countersign's HTTP side: the reviewer console (server-rendered
// templ pages with htmx), the JSON API, live updates over SSE, and the health
// probes, on Echo.
package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/gorilla/sessions"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/migrations"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/static"
	"github.com/countersign/countersign/templates"
)

// Deps are what the web side needs.
type Deps struct {
	Pool     *pgxpool.Pool
	Engine   *workflow.Engine
	Policies *policystore.Cache
	Notify   *notify.Listener
	Logger   *slog.Logger
	// SessionKeys are the cookie's hash key (32 bytes) and block key (32 bytes).
	SessionKeys [2][]byte
	// Secure marks the site as served over TLS (directly or behind a proxy):
	// cookies get Secure and the __Host- prefix, responses get HSTS.
	Secure bool
	// Now is the clock sessions expire by; tests move it.
	Now func() time.Time
}

// Server holds what handlers need.
type Server struct {
	Deps
	echo     *echo.Echo
	sessions *sessions.CookieStore
	cookie   string
}

// New returns a Server with every route registered.
func New(d Deps) *Server {
	s := &Server{Deps: d, echo: echo.New()}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	s.sessions = sessions.NewCookieStore(d.SessionKeys[0], d.SessionKeys[1])
	s.sessions.Options = &sessions.Options{Path: "/", MaxAge: int(sessionAbsolute.Seconds()), HttpOnly: true,
		Secure: d.Secure, SameSite: http.SameSiteLaxMode}
	s.sessions.MaxAge(int(sessionAbsolute.Seconds()))
	s.cookie = "countersign"
	if d.Secure {
		s.cookie = "__Host-countersign"
	}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	// Rate limits key on the peer address; X-Forwarded-For is not trusted.
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = s.handleError
	e.Use(middleware.Recover(), middleware.BodyLimit("1M"), cleanInput)
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection:         "0",
		ContentTypeNosniff:    "nosniff",
		XFrameOptions:         "DENY",
		HSTSMaxAge:            31536000,
		ReferrerPolicy:        "same-origin",
		ContentSecurityPolicy: "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	}))
	s.routes()
	return s
}

// Handler returns the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// routes lists every route in one place.
func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", s.handleHealth)
	e.GET("/readyz", s.handleReady)
	e.StaticFS("/static", static.FS)

	api := e.Group("/api/v1", s.requireToken)
	api.POST("/runs", s.handleAPIRunStart)
	api.GET("/runs", s.handleAPIRunList)
	api.GET("/runs/:id", s.handleAPIRunGet)
	api.GET("/requests", s.handleAPIRequestList)
	api.GET("/requests/:id", s.handleAPIRequestGet)
	api.POST("/requests/:id/decision", s.handleAPIDecide)
	api.GET("/batches", s.handleAPIBatchList)
	api.GET("/batches/:id", s.handleAPIBatchGet)
	api.POST("/batches/:id/decision", s.handleAPIBatchDecide)
	api.GET("/audit", s.handleAPIAudit)
	api.GET("/audit/export", s.handleHistoryExport)

	ui := e.Group("", middleware.CSRFWithConfig(middleware.CSRFConfig{
		TokenLookup:    "header:X-CSRF-Token,form:_csrf",
		CookieName:     "_csrf",
		CookiePath:     "/",
		CookieHTTPOnly: true,
		CookieSecure:   s.Secure,
		CookieSameSite: http.SameSiteLaxMode,
		// A missing, stale or cross-site token is the same refusal.
		ErrorHandler: func(error, echo.Context) error {
			return echo.NewHTTPError(http.StatusForbidden, "this form expired or came from another site; reload the page and try again")
		},
	}))
	ui.GET("/login", s.handleLoginPage)
	ui.POST("/login", s.handleLogin)
	ui.POST("/logout", s.handleLogout, s.requireUser)

	app := ui.Group("", s.requireUser)
	app.GET("/", s.handleInbox)
	app.GET("/inbox/rows", s.handleInboxRows)
	app.GET("/requests/:id", s.handleReview)
	app.POST("/requests/:id/decision", s.handleDecide)
	app.GET("/runs", s.handleRuns)
	app.GET("/runs/:id", s.handleRun)
	app.GET("/runs/:id/status", s.handleRunStatus)
	app.POST("/runs/:id/cancel", s.handleRunCancel)
	app.GET("/batches", s.handleBatches)
	app.GET("/batches/:id", s.handleBatch)
	app.POST("/batches/:id/decision", s.handleBatchDecide)
	app.GET("/batches/:id/progress", s.handleBatchProgress)
	app.GET("/auto", s.handleAuto)
	app.GET("/history", s.handleHistory)
	app.GET("/history/export", s.handleHistoryExport)
	app.GET("/policy", s.handlePolicy)
	app.POST("/policy/simulate", s.handlePolicySimulate)
	app.POST("/policy/apply", s.handlePolicyApply)
	app.GET("/events", s.handleEvents)
}

// render writes a templ component with a status.
func render(c echo.Context, status int, comp templ.Component) error {
	buf := templ.GetBuffer()
	defer templ.ReleaseBuffer(buf)
	if err := comp.Render(c.Request().Context(), buf); err != nil {
		return err
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// page is the layout data for the current request.
func (s *Server) page(c echo.Context, title, nav string) templates.Page {
	p := templates.Page{Title: title, Nav: nav}
	if u, ok := c.Get("user").(*store.User); ok {
		p.User = u
	}
	if t, ok := c.Get("csrf").(string); ok {
		p.CSRF = t
	}
	return p
}

// httpError classifies an error for a response: status, a stable code for the
// API, and a message that is safe to show.
func httpError(err error) (int, string, string) {
	var he *echo.HTTPError
	var ad *workflow.AlreadyDecidedError
	var le *policy.LoadError
	switch {
	case errors.As(err, &he):
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			msg = m
		}
		return he.Code, strings.ToLower(strings.ReplaceAll(http.StatusText(he.Code), " ", "_")), msg
	case errors.As(err, &ad):
		return http.StatusConflict, "already_decided", ad.Error()
	case errors.Is(err, workflow.ErrPayloadChanged):
		return http.StatusConflict, "payload_changed", workflow.ErrPayloadChanged.Error()
	case errors.Is(err, workflow.ErrForbidden):
		return http.StatusForbidden, "forbidden", err.Error()
	case errors.Is(err, workflow.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "not_found", "not found"
	case errors.Is(err, workflow.ErrInvalidInput), errors.Is(err, workflow.ErrUnknownWorkflow):
		return http.StatusUnprocessableEntity, "invalid", err.Error()
	case errors.Is(err, store.ErrInvalidInput):
		// A value the database refused (JSON that jsonb cannot hold): the
		// caller's mistake, and the transaction wrote nothing.
		return http.StatusUnprocessableEntity, "invalid", err.Error()
	case errors.Is(err, workflow.ErrFinal):
		return http.StatusConflict, "run_ended", err.Error()
	case errors.As(err, &le):
		return http.StatusUnprocessableEntity, "invalid_policy", le.Error()
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
	if strings.HasPrefix(c.Request().URL.Path, "/api/") || strings.HasPrefix(c.Request().URL.Path, "/healthz") {
		_ = c.JSON(status, apiError{Error: apiErrorBody{Code: code, Message: msg}})
		return
	}
	if status == http.StatusUnauthorized {
		_ = c.Redirect(http.StatusSeeOther, "/login")
		return
	}
	_ = render(c, status, templates.ErrorPage(s.page(c, http.StatusText(status), ""), status, msg))
}

type apiError struct {
	Error apiErrorBody `json:"error"`
}

type apiErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// handleHealth handles the "GET /healthz" route: the process is alive.
func (s *Server) handleHealth(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady handles the "GET /readyz" route: the database answers and its
// schema is current.
func (s *Server) handleReady(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.Pool.Ping(ctx); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "database unreachable"})
	}
	n, err := migrations.Pending(ctx, s.Pool)
	if err != nil || n > 0 {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "migrations pending", "pending": n})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
