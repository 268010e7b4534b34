// Package web is Countersign's HTTP side: the console, the JSON API and the
// health probes, on Echo.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/migrations"
)

// Server holds what handlers need.
type Server struct {
	pool   *pgxpool.Pool
	engine *workflow.Engine
	logger *slog.Logger
	echo   *echo.Echo
}

// New returns a Server with every route registered.
func New(pool *pgxpool.Pool, engine *workflow.Engine, logger *slog.Logger) *Server {
	s := &Server{pool: pool, engine: engine, logger: logger, echo: echo.New()}
	s.echo.HideBanner, s.echo.HidePort = true, true
	s.echo.IPExtractor = echo.ExtractIPDirect()
	s.echo.Use(middleware.Recover(), middleware.BodyLimit("1M"))
	s.routes()
	return s
}

// Handler returns the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// routes lists every route in one place.
func (s *Server) routes() {
	s.echo.GET("/healthz", s.handleHealth)
	s.echo.GET("/readyz", s.handleReady)
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
	if err := s.pool.Ping(ctx); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "database unreachable"})
	}
	n, err := migrations.Pending(ctx, s.pool)
	if err != nil || n > 0 {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "migrations pending", "pending": n})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready"})
}
