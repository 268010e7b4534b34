// Package bench measures Countersign against the database it runs on, always
// next to a baseline measured in the same run, because a shared machine's
// absolute numbers drift: raw River throughput, a minimal per-step write, the
// engine's throughput, and the latency from a decision's commit to the
// resumed run's next step.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// Options size the benchmark.
type Options struct {
	Workers   int // concurrency for every measurement
	RiverJobs int // no-op jobs for R
	Steps     int // step writes for P
	Runs      int // six-step workflow runs for the engine
	Decisions int // decisions for the resume latency
	Samples   int // alternating samples of P and the engine (the medians are reported)
	ScaleRuns int // ended runs loaded before the engine is measured again (0: not)
}

// Report holds the results.
type Report struct {
	Options       Options
	RiverJobsPerS float64 // R
	BaselineSteps float64 // P: minimal durable step writes per second (the samples' median)
	EngineSteps   float64 // steps per second through the engine (the samples' median)
	EngineRuns    float64 // runs per second through the engine (the samples' median)
	// The alternating samples, in order: P, then the engine just after it.
	BaselineSamples, EngineSamples []float64
	ResumeP50                      time.Duration
	ResumeP99                      time.Duration
	ResumeMax                      time.Duration
	Scale                          *ScaleReport // the engine again at o.ScaleRuns ended runs (scale.go)
}

// StepRatio is engine steps/s over P (the target is at least 0.40): the
// median of the samples' ratios, each engine sample over the P taken just
// before it, which cancels the machine's drift better than the ratio of
// the medians.
func (r Report) StepRatio() float64 {
	return stepRatio(r.BaselineSteps, r.EngineSteps, r.BaselineSamples, r.EngineSamples)
}

// stepRatio is the median of the samples' ratios of engine over P, or
// engine over P without samples.
func stepRatio(baseline, engine float64, baselineSamples, engineSamples []float64) float64 {
	if len(engineSamples) == 0 || len(engineSamples) != len(baselineSamples) {
		return engine / baseline
	}
	ratios := make([]float64, len(engineSamples))
	for i := range ratios {
		ratios[i] = engineSamples[i] / baselineSamples[i]
	}
	return median(ratios)
}

// median of xs (not empty); xs is sorted in place.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// Run executes every measurement on pool, a freshly migrated database.
func Run(ctx context.Context, pool *pgxpool.Pool, dbURL string, o Options, progress io.Writer) (*Report, error) {
	rep := &Report{Options: o}
	var err error
	fmt.Fprintln(progress, "R: raw River throughput ...")
	if rep.RiverJobsPerS, err = riverThroughput(ctx, pool, o); err != nil {
		return nil, fmt.Errorf("river throughput: %w", err)
	}
	// P and the engine in alternating samples: the disk's and the machine's
	// drift over a minute moves P by half, and a single pair would carry it.
	var runs []float64
	for i := range max(o.Samples, 1) {
		fmt.Fprintf(progress, "P: minimal durable step writes (sample %d of %d) ...\n", i+1, max(o.Samples, 1))
		p, err := baselineSteps(ctx, pool, o)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		fmt.Fprintf(progress, "engine: six-step workflows with an auto-approved gate (sample %d) ...\n", i+1)
		var sample Report
		if err := engineThroughput(ctx, pool, dbURL, o, i, &sample); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		rep.BaselineSamples = append(rep.BaselineSamples, p)
		rep.EngineSamples = append(rep.EngineSamples, sample.EngineSteps)
		runs = append(runs, sample.EngineRuns)
	}
	rep.BaselineSteps = median(slices.Clone(rep.BaselineSamples))
	rep.EngineSteps = median(slices.Clone(rep.EngineSamples))
	rep.EngineRuns = median(runs)
	fmt.Fprintln(progress, "decision → resume latency ...")
	if err := resumeLatency(ctx, pool, dbURL, o, rep); err != nil {
		return nil, fmt.Errorf("resume latency: %w", err)
	}
	// The engine again, on this database grown by a history of ended runs.
	if o.ScaleRuns > 0 {
		if rep.Scale, err = engineAtScale(ctx, pool, dbURL, o, progress); err != nil {
			return nil, fmt.Errorf("engine at scale: %w", err)
		}
	}
	return rep, nil
}

type noopArgs struct{}

func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
	done *atomic.Int64
}

func (w *noopWorker) Work(context.Context, *river.Job[noopArgs]) error {
	w.done.Add(1)
	return nil
}

func riverThroughput(ctx context.Context, pool *pgxpool.Pool, o Options) (float64, error) {
	var done atomic.Int64
	workers := river.NewWorkers()
	river.AddWorker(workers, &noopWorker{done: &done})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:        map[string]river.QueueConfig{"bench": {MaxWorkers: o.Workers * 5}},
		Workers:       workers,
		FetchCooldown: 2 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return 0, err
	}
	for inserted := 0; inserted < o.RiverJobs; {
		n := min(5000, o.RiverJobs-inserted)
		params := make([]river.InsertManyParams, n)
		for i := range params {
			params[i] = river.InsertManyParams{Args: noopArgs{}, InsertOpts: &river.InsertOpts{Queue: "bench"}}
		}
		if _, err := client.InsertManyFast(ctx, params); err != nil {
			return 0, err
		}
		inserted += n
	}
	start := time.Now()
	if err := client.Start(ctx); err != nil {
		return 0, err
	}
	for done.Load() < int64(o.RiverJobs) {
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = client.Stop(stopCtx)
	return float64(o.RiverJobs) / elapsed.Seconds(), nil
}

// baselineSteps is the least a durable step must do: one committed row with
// the step's result, one transaction per step, at the same concurrency.
func baselineSteps(ctx context.Context, pool *pgxpool.Pool, o Options) (float64, error) {
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_steps (run_id uuid, seq int, output jsonb, PRIMARY KEY (run_id, seq))`); err != nil {
		return 0, err
	}
	var i atomic.Int64
	return concurrently(o.Workers, o.Steps, func() error {
		_, err := pool.Exec(ctx, `INSERT INTO bench_steps VALUES (gen_random_uuid(), $1, '{"ok":true}')`, i.Add(1))
		return err
	})
}

// register adds the benchmark workflows: six steps, the fourth a gate.
func register(resumed func(runID string)) func(*workflow.Registry, *ai.Offline) {
	return func(r *workflow.Registry, m *ai.Offline) {
		m.Handle("bench", func(json.RawMessage) (any, error) { return map[string]int{"n": 1}, nil })
		six := func(kind string) func(ctx context.Context, _ struct{}) (int, error) {
			return func(ctx context.Context, _ struct{}) (int, error) {
				if _, err := workflow.Step(ctx, "collect_context", func(context.Context) (int, error) { return 1, nil }); err != nil {
					return 0, err
				}
				if _, err := workflow.Generate[map[string]int](ctx, "propose_change", ai.Request{Task: "bench"}); err != nil {
					return 0, err
				}
				if _, err := workflow.Step(ctx, "run_checks", func(context.Context) (int, error) { return 1, nil }); err != nil {
					return 0, err
				}
				if _, err := workflow.RequestApproval(ctx, workflow.Action{Kind: kind, Summary: "bench"}); err != nil {
					return 0, err
				}
				if resumed != nil {
					resumed(workflow.RunID(ctx))
				}
				if _, err := workflow.Effect(ctx, "apply_change", func(context.Context, workflow.EffectContext) (int, error) { return 1, nil }); err != nil {
					return 0, err
				}
				return workflow.Step(ctx, "summarize_result", func(context.Context) (int, error) { return 1, nil })
			}
		}
		workflow.Register(r, "bench_auto", six("bench.read"))
		workflow.Register(r, "bench_gate", six("bench.write"))
	}
}

const benchPolicy = `version: 1
rules:
  - name: bench-read
    when: action.kind == "bench.read"
    tier: auto
`

// startApp runs a quiet Countersign process on the benchmark database until
// the returned stop is called. With opts.Web it serves on a loopback port
// and returns the base URL.
func startApp(ctx context.Context, pool *pgxpool.Pool, dbURL string, workers int, opts app.Options) (a *app.App, base string, stop func(), err error) {
	return startAppConfig(ctx, pool, benchAppConfig(dbURL, workers), opts)
}

// startAppConfig is startApp with a configuration of the caller's (the
// approvals suite allows callbacks to loopback).
func startAppConfig(ctx context.Context, pool *pgxpool.Pool, cfg config.Config, opts app.Options) (a *app.App, base string, stop func(), err error) {
	if opts.Web {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", nil, err
		}
		opts.Listener, base = ln, "http://"+ln.Addr().String()
	}
	// Quiet, but not mute: a 500 the benchmark reports says "it has been
	// logged", and the log is where its cause is.
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	if a, err = app.New(cfg, pool, opts); err != nil {
		return nil, "", nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(runCtx) }()
	return a, base, func() { cancel(); <-done }, nil
}

// engineThroughput times o.Runs six-step runs, started first (business
// keys of sample n), then executed by a worker process of o.Workers.
func engineThroughput(ctx context.Context, pool *pgxpool.Pool, dbURL string, o Options, n int, rep *Report) error {
	if _, err := applyPolicy(ctx, pool); err != nil {
		return err
	}
	// Insert every run first, then start the workers, so that the measured
	// time is execution only.
	starter, _, stopStarter, err := startApp(ctx, pool, dbURL, o.Workers, app.Options{Register: register(nil)})
	if err != nil {
		return err
	}
	var ended int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM workflow_runs WHERE workflow = 'bench_auto' AND status IN ('completed', 'failed')`).Scan(&ended); err != nil {
		stopStarter()
		return err
	}
	for i := range o.Runs {
		if _, _, err := starter.Engine.Start(ctx, workflow.StartParams{Workflow: "bench_auto", BusinessKey: fmt.Sprintf("auto-%d-%d", n, i)}); err != nil {
			stopStarter()
			return err
		}
	}
	stopStarter()
	start := time.Now()
	_, _, stop, err := startApp(ctx, pool, dbURL, o.Workers, app.Options{Worker: true, Register: register(nil)})
	if err != nil {
		return err
	}
	defer stop()
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM workflow_runs WHERE workflow = 'bench_auto' AND status IN ('completed', 'failed')`).Scan(&n); err != nil {
			return err
		}
		if n == ended+o.Runs {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := time.Since(start)
	var failed int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM workflow_runs WHERE workflow = 'bench_auto' AND status = 'failed'`).Scan(&failed); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d benchmark runs failed", failed)
	}
	rep.EngineRuns = float64(o.Runs) / elapsed.Seconds()
	rep.EngineSteps = rep.EngineRuns * 6
	return nil
}

func resumeLatency(ctx context.Context, pool *pgxpool.Pool, dbURL string, o Options, rep *Report) error {
	var mu sync.Mutex
	resumedAt := map[string]time.Time{}
	seen := map[string]bool{}
	resumed := func(runID string) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		// The first pass through the gate suspends before this point; only a
		// resumed replay gets here.
		if !seen[runID] {
			seen[runID] = true
			resumedAt[runID] = now
		}
	}
	a, _, stop, err := startApp(ctx, pool, dbURL, o.Workers, app.Options{Worker: true, Register: register(resumed)})
	if err != nil {
		return err
	}
	defer stop()
	ids := make([]string, o.Decisions)
	for i := range ids {
		run, _, err := a.Engine.Start(ctx, workflow.StartParams{Workflow: "bench_gate", BusinessKey: fmt.Sprint("gate-", i), StartedBy: "bench"})
		if err != nil {
			return err
		}
		ids[i] = run.ID
	}
	for {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM workflow_runs WHERE workflow = 'bench_gate' AND status = 'waiting_human'`).Scan(&n); err != nil {
			return err
		}
		if n == o.Decisions {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	committed := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		reqs, err := store.RequestListByRun(ctx, pool, id)
		if err != nil || len(reqs) != 1 {
			return fmt.Errorf("run %s: requests %v: %w", id, len(reqs), err)
		}
		if _, err := a.Engine.Decide(ctx, workflow.DecideParams{RequestID: reqs[0].ID, Verdict: vocab.VerdictApprove,
			PayloadHash: reqs[0].PayloadHash, Actor: workflow.Actor{Name: "bench-reviewer", Roles: []vocab.Role{vocab.RoleReviewer}}}); err != nil {
			return err
		}
		committed[id] = time.Now()
		// Space decisions out a little, as reviewers do, so that each is
		// measured on its own rather than queued behind a burst.
		time.Sleep(2 * time.Millisecond)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := len(resumedAt)
		mu.Unlock()
		if n == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d runs resumed within 60s", n, len(ids))
		}
		time.Sleep(10 * time.Millisecond)
	}
	lat := make([]time.Duration, 0, len(ids))
	for _, id := range ids {
		lat = append(lat, max(resumedAt[id].Sub(committed[id]), 0))
	}
	rep.ResumeP50, rep.ResumeP99, rep.ResumeMax = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	return nil
}

func applyPolicy(ctx context.Context, pool *pgxpool.Pool) (*store.PolicyVersion, error) {
	return store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.PolicyVersion, error) {
		return store.PolicyActivate(ctx, tx, benchPolicy, "bench", "bench")
	})
}
