package tracing

import (
	"context"
	"strings"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"go.opentelemetry.io/contrib/instrumentation/github.com/labstack/echo/otelecho"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

var noopTracer = noop.NewTracerProvider().Tracer(ScopeName)

// Pgx returns the query tracer (otelpgx) to set as a pool's
// ConnConfig.Tracer: a span per statement, named for the sqlc query it runs
// ("RunClaim") or else for its SQL operation ("SELECT"). Query parameters
// are not recorded (they hold the runs' data).
func Pgx(tp trace.TracerProvider) pgx.QueryTracer {
	return otelpgx.NewTracer(otelpgx.WithTracerProvider(tp), otelpgx.WithSpanNameFunc(SQLSpanName),
		otelpgx.WithDisableConnectionDetailsInAttributes())
}

// SQLSpanName names a statement's span: sqlc's "-- name: RunClaim :one"
// gives "RunClaim"; any other statement its first keyword.
func SQLSpanName(stmt string) string {
	s := strings.TrimSpace(stmt)
	if rest, ok := strings.CutPrefix(s, "-- name: "); ok {
		if name, _, ok := strings.Cut(rest, " "); ok && name != "" {
			return name
		}
	}
	return otelpgx.SQLOperationName(context.Background(), s)
}

// Echo returns the HTTP server middleware (otelecho): a server span per
// request, named for its route, continuing a caller's traceparent. Static
// files are not traced.
func Echo(tp trace.TracerProvider) echo.MiddlewareFunc {
	return otelecho.Middleware(ServiceName, otelecho.WithTracerProvider(tp), otelecho.WithPropagators(Propagator),
		otelecho.WithSkipper(func(c echo.Context) bool {
			return middleware.DefaultSkipper(c) || strings.HasPrefix(c.Request().URL.Path, "/static/")
		}))
}
