// Package web is Countersign's HTTP side: the reviewer console (server-rendered
// templ pages with htmx), the JSON API, live updates over SSE, and the health
// probes, on Echo.
package web

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/gorilla/sessions"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/metrics"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/slack"
	"github.com/countersign/countersign/internal/notice/webhook"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/migrations"
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
	// Receipts signs decision receipts and lists the public keys; nil means
	// a signer with the key stored in the database.
	Receipts *receipt.Signer
	// Ask files and reads approvals (/api/v1/approvals).
	Ask *ask.Service
	// SessionKeys are the cookie keys, newest first, each 64 bytes: a hash
	// key (32) then a block key (32). New cookies use the first; the others
	// are still accepted, so that keys rotate without signing anyone out.
	SessionKeys [][]byte
	// Secure marks the site as served over TLS (directly or behind a proxy):
	// cookies get Secure and the __Host- prefix, responses get HSTS.
	Secure bool
	// Origins are the origins the console is reached at
	// (scheme://host[:port]); a console form posted from any other is refused.
	Origins []string
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []*net.IPNet
	// Now is the web side's one clock: sessions expire, the inbox ranks
	// deadlines, tokens expire and simulations look back by it; tests move
	// it. Nil means time.Now.
	Now func() time.Time
	// KeepAlive is how often a live-update stream pings and re-checks its
	// session; zero means 25 s. Tests shorten it.
	KeepAlive time.Duration
	// Callbacks is the outbox the admin pages redeliver through; nil
	// refuses redelivery.
	Callbacks *callback.Outbox
	// Notices is the notification dispatcher: its channels, and redelivery.
	Notices *notice.Dispatcher
	// Slack answers Slack's button clicks; nil (or no signing secret)
	// answers 404 at /slack/interactions.
	Slack *slack.Client
	// Webhooks manages webhook subscriptions; nil refuses to make any.
	Webhooks *webhook.Service
	// Trace, when set, is the first middleware: the OpenTelemetry server
	// span of each request (internal/tracing.Echo; nil while traces are off).
	Trace echo.MiddlewareFunc
	// MetricQueues are the River queues GET /metrics always reports (with
	// those River lists).
	MetricQueues []string
}

// Server holds what handlers need.
type Server struct {
	Deps
	echo     *echo.Echo
	sessions *sessions.CookieStore
	cookie   string
	refused  refusals // refused decisions, for the page a refusal redirects to
	metrics  http.Handler
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
	if s.KeepAlive <= 0 {
		s.KeepAlive = 25 * time.Second
	}
	if s.Receipts == nil {
		s.Receipts = receipt.NewSigner(d.Pool, nil)
	}
	var pairs [][]byte
	for _, k := range d.SessionKeys {
		pairs = append(pairs, k[:32], k[32:64])
	}
	s.metrics = metrics.Handler(metrics.NewCollector(d.Pool, s.Logger, d.MetricQueues...))
	s.sessions = sessions.NewCookieStore(pairs...)
	s.sessions.Options = &sessions.Options{Path: "/", MaxAge: int(sessionAbsolute.Seconds()), HttpOnly: true,
		Secure: d.Secure, SameSite: http.SameSiteLaxMode}
	s.sessions.MaxAge(int(sessionAbsolute.Seconds()))
	s.cookie = "countersign"
	if d.Secure {
		s.cookie = "__Host-countersign"
	}
	e := s.echo
	e.HideBanner, e.HidePort = true, true
	// Rate limits key on the client address: the peer's, or the one
	// X-Forwarded-For names when the peer is a configured proxy. Echo's own
	// defaults would also trust every private and loopback peer.
	e.IPExtractor = echo.ExtractIPDirect()
	if len(d.TrustedProxies) > 0 {
		opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range d.TrustedProxies {
			opts = append(opts, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(opts...)
	}
	e.HTTPErrorHandler = s.handleError
	if d.Trace != nil {
		e.Use(d.Trace)
	}
	e.Use(middleware.Recover(), middleware.BodyLimit("1M"), cleanInput, s.headers)
	e.Use(middleware.SecureWithConfig(middleware.SecureConfig{
		XSSProtection:      "0",
		ContentTypeNosniff: "nosniff",
		XFrameOptions:      "DENY",
		// HSTS is sent by s.headers: Echo would send it only on
		// connections it sees as TLS, never behind a TLS-terminating proxy.
		ReferrerPolicy:        "same-origin",
		ContentSecurityPolicy: "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	}))
	s.routes()
	return s
}

// headers sets what every response carries: HSTS when the site is served
// over HTTPS (COUNTERSIGN_SECURE_COOKIES, even behind a proxy), and
// no-store on everything but static files, so that no page, API answer or
// export of a signed-in user stays in a browser or proxy cache; static
// files linked with their content's hash (static.URL) are cached for good.
func (s *Server) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Set(receivedKey, time.Now()) // for Server-Timing (startTiming)
		h := c.Response().Header()
		if s.Secure {
			h.Set(echo.HeaderStrictTransportSecurity, "max-age=31536000; includeSubDomains")
		}
		if path, ok := strings.CutPrefix(c.Request().URL.Path, "/static/"); !ok {
			h.Set("Cache-Control", "no-store")
		} else if static.Versioned(path, c.QueryParam("v")) {
			// Pages link static files by static.URL, whose hash changes
			// with the content: the browser need not ask again.
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		}
		return next(c)
	}
}

// Handler returns the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// routes lists every route in one place.
func (s *Server) routes() {
	e := s.echo
	e.GET("/healthz", s.handleHealth)
	e.GET("/readyz", s.handleReady)
	e.GET("/metrics", s.handleMetrics)
	e.StaticFS("/static", static.FS)
	// The receipt keys are public, so that anyone holding a receipt can
	// check it: no token, and cacheable.
	e.GET("/api/v1/receipts/keys", s.handleReceiptKeys)
	e.GET("/.well-known/countersign/receipt-keys", s.handleReceiptKeys)
	// Slack signs its interactions: no session, no CSRF token, and the raw
	// body is kept for the signature before anything parses it.
	e.Pre(slackRawBody)
	e.POST(slackPath, s.handleSlackInteraction)

	// Every API route names the scope it needs; without requireScope a route
	// has no user and fails closed.
	api := e.Group("/api/v1", s.requireToken)
	api.POST("/runs", s.handleAPIRunStart, requireScope(account.ScopeRunsWrite))
	api.GET("/runs", s.handleAPIRunList, requireScope(account.ScopeRunsRead))
	api.GET("/runs/:id", s.handleAPIRunGet, requireScope(account.ScopeRunsRead))
	api.POST("/runs/:id/events/:name", s.handleAPIRunEvent, requireScope(account.ScopeRunsWrite))
	api.POST("/runs/:id/unusable", s.handleAPIRunUnusable, requireScope(account.ScopeRunsFlag))
	api.GET("/requests", s.handleAPIRequestList, requireScope(account.ScopeRequestsRead))
	api.GET("/requests/:id", s.handleAPIRequestGet, requireScope(account.ScopeRequestsRead))
	api.GET("/requests/:id/receipt", s.handleAPIRequestReceipt, requireScope(account.ScopeRequestsRead))
	api.POST("/requests/:id/decision", s.handleAPIDecide, requireScope(account.ScopeDecide))
	api.GET("/batches", s.handleAPIBatchList, requireScope(account.ScopeRequestsRead))
	api.GET("/batches/:id", s.handleAPIBatchGet, requireScope(account.ScopeRequestsRead))
	api.POST("/batches/:id/decision", s.handleAPIBatchDecide, requireScope(account.ScopeDecide))
	api.GET("/audit", s.handleAPIAudit, requireScope(account.ScopeAuditRead))
	api.GET("/audit/export", s.handleHistoryExport, requireScope(account.ScopeAuditRead))

	// Approvals take a bearer token like the rest of the API, or the
	// console's session (with its CSRF token), so that a page can file one.
	approvals := e.Group("/api/v1/approvals")
	approvals.POST("", s.handleAPIApprovalSubmit, s.tokenOrSession(account.ScopeApprovalsWrite))
	approvals.GET("/:id", s.handleAPIApprovalGet, s.tokenOrSession(account.ScopeApprovalsWrite, account.ScopeRequestsRead))

	// MCP clients authenticate with a bearer token (approvals:write), never
	// a cookie: no CSRF check, like the API.
	e.Any("/mcp", s.handleMCP())

	ui := e.Group("", s.csrf)
	ui.GET("/login", s.handleLoginPage)
	ui.POST("/login", s.handleLogin)
	ui.POST("/logout", s.handleLogout, s.requireUser)

	app := ui.Group("", s.requireUser)
	app.GET("/", s.handleInbox)
	app.GET("/inbox/rows", s.handleInboxRows)
	app.POST("/inbox/filters", s.handleSavedFilterSave)
	app.POST("/inbox/filters/:id/delete", s.handleSavedFilterDelete)
	app.POST("/requests/:id/claim", s.handleClaim)
	app.POST("/requests/:id/claim/renew", s.handleClaimRenew)
	app.POST("/requests/:id/unclaim", s.handleClaimRelease)
	app.GET("/requests/:id", s.handleReview)
	app.GET("/requests/:id/state", s.handleReviewState)
	app.POST("/requests/:id/decision", s.handleDecide)
	app.GET("/runs", s.handleRuns)
	app.GET("/runs/rows", s.handleRunsRows)
	app.GET("/runs/:id", s.handleRun)
	app.GET("/runs/:id/status", s.handleRunStatus)
	app.POST("/runs/:id/cancel", s.handleRunCancel)
	app.POST("/runs/:id/unusable", s.handleRunUnusable)
	app.GET("/unusable", s.handleUnusable)
	app.GET("/batches", s.handleBatches)
	app.GET("/batches/:id", s.handleBatch)
	app.POST("/batches/:id/decision", s.handleBatchDecide)
	app.GET("/batches/:id/progress", s.handleBatchProgress)
	app.GET("/auto", s.handleAuto)
	app.GET("/dashboard", s.handleDashboard)
	app.GET("/history", s.handleHistory)
	app.GET("/history/export", s.handleHistoryExport)
	app.GET("/policy", s.handlePolicy)
	app.POST("/policy/simulate", s.handlePolicySimulate)
	app.POST("/policy/apply", s.handlePolicyApply)
	app.GET("/policy/rules", s.handleRules)
	app.POST("/policy/rules/review", s.handleRuleReview)
	app.POST("/policy/rules/activate", s.handleRuleActivate)
	app.POST("/policy/grants/:id/revoke", s.handleGrantRevoke)
	app.GET("/events", s.handleEvents)
	app.GET("/settings/notifications", s.handleNoticeSettings)
	app.POST("/settings/notifications", s.handleNoticeSettingsSave)

	admin := app.Group("/admin", requireAdmin)
	admin.GET("/tokens", s.handleTokens)
	admin.POST("/tokens", s.handleTokenCreate)
	admin.POST("/tokens/:id/revoke", s.handleTokenRevoke)
	admin.GET("/deliveries", s.handleDeliveries)
	admin.GET("/deliveries/:id", s.handleDelivery)
	admin.POST("/deliveries/:id/redeliver", s.handleRedeliver)
	admin.GET("/notifications", s.handleNoticeDeliveries)
	admin.GET("/notifications/:id", s.handleNoticeMessage)
	admin.POST("/notifications/:id/redeliver", s.handleNoticeRedeliver)
	admin.GET("/notifications/defaults", s.handleNoticeDefaults)
	admin.POST("/notifications/defaults", s.handleNoticeDefaultsSave)
	admin.GET("/webhooks", s.handleWebhooks)
	admin.POST("/webhooks", s.handleWebhookCreate)
	admin.POST("/webhooks/:id/delete", s.handleWebhookDelete)
}

// render writes a templ component with a status.
func render(c echo.Context, status int, comp templ.Component) error {
	buf := templ.GetBuffer()
	defer templ.ReleaseBuffer(buf)
	start := time.Now()
	if err := comp.Render(c.Request().Context(), buf); err != nil {
		return err
	}
	if t := timingOf(c); t != nil {
		t.add("render", start)
		t.write(c)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// renderFragments writes the parts of a templ component that ids name
// (templ.Fragment), for an htmx request that swaps them into the page.
func renderFragments(c echo.Context, status int, comp templ.Component, ids ...any) error {
	buf := templ.GetBuffer()
	defer templ.ReleaseBuffer(buf)
	start := time.Now()
	if err := templ.RenderFragments(c.Request().Context(), buf, comp, ids...); err != nil {
		return err
	}
	if t := timingOf(c); t != nil {
		t.add("render", start)
		t.write(c)
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

// handleHealth handles the "GET /healthz" route: the process is alive.
func (s *Server) handleHealth(c echo.Context) error {
	return c.JSON(http.StatusOK, statusJSON{Status: "ok"})
}

// handleReady handles the "GET /readyz" route: the database answers and its
// schema is current.
func (s *Server) handleReady(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	if err := s.Pool.Ping(ctx); err != nil {
		return c.JSON(http.StatusServiceUnavailable, statusJSON{Status: "database unreachable"})
	}
	n, err := migrations.Pending(ctx, s.Pool)
	if err != nil || n > 0 {
		return c.JSON(http.StatusServiceUnavailable, pendingJSON{Pending: n, Status: "migrations pending"})
	}
	return c.JSON(http.StatusOK, statusJSON{Status: "ready"})
}
