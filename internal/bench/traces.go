package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/tracing"
	"github.com/countersign/countersign/internal/workflow"
)

// TracesOptions size the traces suite.
type TracesOptions struct {
	Runs    int // six-step runs per round
	Workers int
	Rounds  int // rounds of each, alternating off and on
}

// TracesReport is what tracing costs the engine: the six-step runs of the
// engine suite executed with traces off (the baseline) and on (every span
// exported over OTLP/HTTP to a local receiver that discards them), in
// rounds on one database, each round's order the previous one's reversed.
type TracesReport struct {
	Options     TracesOptions
	OffRunsPerS float64 // the best round
	OnRunsPerS  float64
	// SpansPerRun is how many spans a run made with traces on (statements,
	// jobs, executions, steps, the model call).
	SpansPerRun float64
	// OffCPUPerRun and OnCPUPerRun are the process's CPU time per run while
	// the runs execute (the mean over rounds; on includes the local
	// receiver's reading of the exports): less sensitive than runs/s to
	// what else the machine is doing.
	OffCPUPerRun, OnCPUPerRun time.Duration
}

// Ratio is runs/s with traces on over off.
func (r *TracesReport) Ratio() float64 { return r.OnRunsPerS / r.OffRunsPerS }

// CPURatio is CPU time per run with traces on over off.
func (r *TracesReport) CPURatio() float64 { return float64(r.OnCPUPerRun) / float64(r.OffCPUPerRun) }

// Traces measures the engine's throughput with traces off and on.
func Traces(ctx context.Context, pool *pgxpool.Pool, dbURL string, o TracesOptions, progress io.Writer) (*TracesReport, error) {
	if _, err := applyPolicy(ctx, pool); err != nil {
		return nil, err
	}
	// The receiver: an OTLP/HTTP endpoint on loopback that reads and drops.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL("http://"+ln.Addr().String()+"/v1/traces"))
	if err != nil {
		return nil, err
	}
	counted := &countingExporter{SpanExporter: exp}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(counted))
	defer func() { _ = tp.Shutdown(context.WithoutCancel(ctx)) }()
	pc := pool.Config()
	pc.ConnConfig.Tracer = tracing.Pgx(tp)
	pc.MaxConns = int32(o.Workers + 12)
	traced, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, err
	}
	defer traced.Close()

	rep := &TracesReport{Options: o}
	var onRuns int
	// Rounds alternate which goes first, so that neither always meets the
	// warmer (or fuller) database.
	for round := range o.Rounds {
		for i := range 2 {
			if (round+i)%2 == 0 {
				fmt.Fprintf(progress, "traces: round %d of %d, off ...\n", round+1, o.Rounds)
				off, cpu, err := timeRuns(ctx, pool, dbURL, o, fmt.Sprint("off-", round, "-"), nil)
				if err != nil {
					return nil, err
				}
				rep.OffRunsPerS = max(rep.OffRunsPerS, off)
				rep.OffCPUPerRun += cpu / time.Duration(o.Rounds)
				continue
			}
			fmt.Fprintf(progress, "traces: round %d of %d, on ...\n", round+1, o.Rounds)
			on, cpu, err := timeRuns(ctx, traced, dbURL, o, fmt.Sprint("on-", round, "-"), tp)
			if err != nil {
				return nil, err
			}
			rep.OnRunsPerS = max(rep.OnRunsPerS, on)
			rep.OnCPUPerRun += cpu / time.Duration(o.Rounds)
			onRuns += o.Runs
		}
	}
	if err := tp.ForceFlush(ctx); err != nil {
		return nil, fmt.Errorf("flush spans: %w", err)
	}
	rep.SpansPerRun = float64(counted.spans.Load()) / float64(onRuns)
	return rep, nil
}

// timeRuns inserts o.Runs six-step runs, then times their execution by a
// worker process traced by tp (nil: traces off), and returns runs/s and
// this process's CPU time per run meanwhile.
func timeRuns(ctx context.Context, pool *pgxpool.Pool, dbURL string, o TracesOptions, prefix string, tp *sdktrace.TracerProvider) (perS float64, cpuPerRun time.Duration, err error) {
	opts := app.Options{Register: register(nil)}
	if tp != nil {
		opts.TracerProvider = tp
	}
	starter, _, stopStarter, err := startApp(ctx, pool, dbURL, o.Workers, opts)
	if err != nil {
		return 0, 0, err
	}
	for i := range o.Runs {
		if _, _, err := starter.Engine.Start(ctx, workflow.StartParams{Workflow: "bench_auto", BusinessKey: fmt.Sprint(prefix, i)}); err != nil {
			stopStarter()
			return 0, 0, err
		}
	}
	stopStarter()
	start, cpu := time.Now(), processCPU()
	opts.Worker = true
	_, _, stop, err := startApp(ctx, pool, dbURL, o.Workers, opts)
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	for {
		var done, failed int
		if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'failed') FROM workflow_runs
			WHERE workflow = 'bench_auto' AND business_key LIKE $1 || '%' AND status IN ('completed', 'failed')`, prefix).Scan(&done, &failed); err != nil {
			return 0, 0, err
		}
		if failed > 0 {
			return 0, 0, fmt.Errorf("%d benchmark runs failed", failed)
		}
		if done == o.Runs {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return 0, 0, errors.New("the runs did not finish within 10 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return float64(o.Runs) / time.Since(start).Seconds(), (processCPU() - cpu) / time.Duration(o.Runs), nil
}

// countingExporter counts the spans it passes on.
type countingExporter struct {
	sdktrace.SpanExporter
	spans atomic.Int64
}

// ExportSpans implements sdktrace.SpanExporter.
func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	c.spans.Add(int64(len(spans)))
	return c.SpanExporter.ExportSpans(ctx, spans)
}
