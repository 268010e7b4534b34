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
//
// Only statements made inside a trace are traced (an HTTP request, a River
// job, a run's execution): River's fetch polling, its leader election and
// maintenance, and the notification listener would otherwise each start a
// trace of one span, several a second, burying the ones that matter.
// Connecting and acquiring a connection are not traced either.
func Pgx(tp trace.TracerProvider) pgx.QueryTracer {
	return inTrace{otelpgx.NewTracer(otelpgx.WithTracerProvider(tp), otelpgx.WithSpanNameFunc(SQLSpanName),
		otelpgx.WithDisableConnectionDetailsInAttributes())}
}

// inTrace passes on to otelpgx the statements whose context holds a span.
// Its End calls find the context their Start returned: with otelpgx's span
// when it was passed on, without any span when not.
type inTrace struct{ t *otelpgx.Tracer }

var (
	_ pgx.QueryTracer    = inTrace{}
	_ pgx.BatchTracer    = inTrace{}
	_ pgx.CopyFromTracer = inTrace{}
	_ pgx.PrepareTracer  = inTrace{}
)

func traced(ctx context.Context) bool { return trace.SpanContextFromContext(ctx).IsValid() }

// TraceQueryStart implements pgx.QueryTracer.
func (i inTrace) TraceQueryStart(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if !traced(ctx) {
		return ctx
	}
	return i.t.TraceQueryStart(ctx, c, d)
}

// TraceQueryEnd implements pgx.QueryTracer.
func (i inTrace) TraceQueryEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	if traced(ctx) {
		i.t.TraceQueryEnd(ctx, c, d)
	}
}

// TraceBatchStart implements pgx.BatchTracer.
func (i inTrace) TraceBatchStart(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	if !traced(ctx) {
		return ctx
	}
	return i.t.TraceBatchStart(ctx, c, d)
}

// TraceBatchQuery implements pgx.BatchTracer.
func (i inTrace) TraceBatchQuery(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	if traced(ctx) {
		i.t.TraceBatchQuery(ctx, c, d)
	}
}

// TraceBatchEnd implements pgx.BatchTracer.
func (i inTrace) TraceBatchEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceBatchEndData) {
	if traced(ctx) {
		i.t.TraceBatchEnd(ctx, c, d)
	}
}

// TraceCopyFromStart implements pgx.CopyFromTracer.
func (i inTrace) TraceCopyFromStart(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	if !traced(ctx) {
		return ctx
	}
	return i.t.TraceCopyFromStart(ctx, c, d)
}

// TraceCopyFromEnd implements pgx.CopyFromTracer.
func (i inTrace) TraceCopyFromEnd(ctx context.Context, c *pgx.Conn, d pgx.TraceCopyFromEndData) {
	if traced(ctx) {
		i.t.TraceCopyFromEnd(ctx, c, d)
	}
}

// TracePrepareStart implements pgx.PrepareTracer.
func (i inTrace) TracePrepareStart(ctx context.Context, c *pgx.Conn, d pgx.TracePrepareStartData) context.Context {
	if !traced(ctx) {
		return ctx
	}
	return i.t.TracePrepareStart(ctx, c, d)
}

// TracePrepareEnd implements pgx.PrepareTracer.
func (i inTrace) TracePrepareEnd(ctx context.Context, c *pgx.Conn, d pgx.TracePrepareEndData) {
	if traced(ctx) {
		i.t.TracePrepareEnd(ctx, c, d)
	}
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
