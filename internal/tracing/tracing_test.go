package tracing

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/countersign/countersign/internal/testdb"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEnabled(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		env      map[string]string
		enabled  bool
		endpoint string
	}{
		"Unset":          {env: nil},
		"Endpoint":       {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}, enabled: true, endpoint: "http://c:4318/v1/traces"},
		"TracesEndpoint": {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://t/x"}, enabled: true, endpoint: "https://t/x"},
		"SDKDisabled":    {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, endpoint: "http://c:4318/v1/traces"},
		"ExporterNone":   {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, endpoint: "http://c:4318/v1/traces"},
		"BlankIsUnset":   {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}},
	} {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, c.enabled, Enabled(env(c.env)))
			require.Equal(t, c.endpoint, endpoint(env(c.env)))
		})
	}
}

func TestSetup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("OffDoesNothing", func(t *testing.T) {
		shutdown, err := Setup(ctx, env(nil))
		require.NoError(t, err)
		require.Nil(t, Global())
		require.NoError(t, shutdown(ctx))
	})
	t.Run("ABadEndpointIsRefused", func(t *testing.T) {
		for _, ep := range []string{"c:4318", "ftp://c/", "http://"} {
			_, err := Setup(ctx, env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": ep}))
			require.ErrorContains(t, err, "is not an http(s) URL", ep)
			require.Nil(t, Global())
		}
	})
}

func TestParentRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	require.Empty(t, Parent(ctx), "no span, no traceparent")
	require.Equal(t, ctx, ContextWith(ctx, ""))
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	sctx, span := tp.Tracer("t").Start(ctx, "s")
	defer span.End()
	parent := Parent(sctx)
	require.Regexp(t, `^00-[0-9a-f]{32}-[0-9a-f]{16}-01$`, parent)
	_, child := tp.Tracer("t").Start(ContextWith(ctx, parent), "child")
	defer child.End()
	require.Equal(t, span.SpanContext().TraceID(), child.SpanContext().TraceID())
	require.Empty(t, Parent(ContextWith(ctx, "not a traceparent")), "a malformed one is ignored")
}

func TestSQLSpanName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "RunClaim", SQLSpanName("-- name: RunClaim :one\nUPDATE workflow_runs SET ..."))
	require.Equal(t, "SELECT", SQLSpanName("  select 1"))
	require.Equal(t, "INSERT", SQLSpanName("/* bulk */ INSERT INTO t VALUES (1)"))
}

func TestJobMetadata(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var md map[string]any
	require.NoError(t, json.Unmarshal(withMetadata([]byte(`{"river:unique":true}`), tp), &md))
	require.Equal(t, map[string]any{"river:unique": true, "traceparent": tp}, md)
	require.NoError(t, json.Unmarshal(withMetadata(nil, tp), &md))
	require.Equal(t, tp, md["traceparent"])
	require.Equal(t, []byte(`[1]`), withMetadata([]byte(`[1]`), tp), "not an object: left alone")
}

// TestPgxTracesOnlyInsideATrace: a statement made under a span is a child
// span named for its query; one made outside any trace (River's polling, the
// listener) makes none.
func TestPgxTracesOnlyInsideATrace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	pc, err := pgxpool.ParseConfig(testdb.New(t))
	require.NoError(t, err)
	pc.ConnConfig.Tracer = Pgx(tp)
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	_, err = pool.Exec(ctx, "SELECT 1")
	require.NoError(t, err)
	batch := &pgx.Batch{}
	batch.Queue("SELECT 2")
	require.NoError(t, pool.SendBatch(ctx, batch).Close())
	require.Empty(t, exp.GetSpans(), "no trace, no span")

	sctx, parent := tp.Tracer("t").Start(ctx, "job")
	var n int
	require.NoError(t, pool.QueryRow(sctx, "-- name: CountOne :one\nSELECT count(*) FROM (SELECT 1) x").Scan(&n))
	parent.End()
	var children []string
	for _, s := range exp.GetSpans() {
		require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext.TraceID(), s.Name)
		if s.Parent.SpanID() == parent.SpanContext().SpanID() {
			children = append(children, s.Name)
		}
	}
	require.Equal(t, []string{"CountOne"}, children, "the query, its preparation under it")
}
