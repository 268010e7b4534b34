package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/bench"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/migrations"
)

func cmdBench(e *env, args []string) error {
	fs, dbURL := e.flags("bench", "bench [--workers N] [--runs N] [--decisions N] [--json]")
	o := bench.Options{}
	fs.IntVar(&o.Workers, "workers", 20, "concurrency for every measurement")
	fs.IntVar(&o.RiverJobs, "river-jobs", 50000, "no-op jobs for the raw River baseline")
	fs.IntVar(&o.Steps, "steps", 20000, "step writes for the per-step baseline")
	fs.IntVar(&o.Runs, "runs", 2000, "six-step runs for engine throughput")
	fs.IntVar(&o.Decisions, "decisions", 1000, "decisions for the resume latency")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	only := fs.String("only", "", "run one suite: engine, console, audit, batch or recovery (default all)")
	ro := bench.RecoveryOptions{}
	fs.IntVar(&ro.Runs, "recovery-runs", 200, "runs started on the worker process that is killed")
	// The recovery suite runs its doomed worker as this command in a process
	// of its own; the flag is for that, not for people.
	recoveryWorker := fs.Bool("recovery-worker", false, "internal: be the recovery benchmark's worker process")
	bo := bench.BatchOptions{}
	fs.IntVar(&bo.Batches, "batches", 5, "1,000-item batch decisions to time")
	fs.IntVar(&bo.Size, "batch-size", 1000, "items per batch")
	ao := bench.AuditOptions{Writers: 8}
	fs.IntVar(&ao.Appends, "audit-appends", 20000, "audit appends by 8 concurrent writers")
	fs.IntVar(&ao.Verify, "audit-verify", 1_000_000, "events in the chain audit verify walks")
	co := bench.ConsoleOptions{Reviewers: 20, Samples: 200}
	fs.IntVar(&co.Runs, "console-runs", 1_000_000, "runs in the console benchmark's database")
	fs.IntVar(&co.Waiting, "console-waiting", 100_000, "of which waiting, each with a pending request")
	fs.IntVar(&co.Decisions, "console-decisions", 2000, "decision POSTs by 20 concurrent reviewers")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.Workers < 1 || o.RiverJobs < 1 || o.Steps < 1 || o.Runs < 1 || o.Decisions < 100 {
		return usagef("every size must be positive and --decisions at least 100")
	}
	if *only != "" && *only != "engine" && *only != "console" && *only != "audit" && *only != "batch" && *only != "recovery" {
		return usagef("--only must be engine, console, audit, batch or recovery")
	}
	if ro.Runs < 1 {
		return usagef("--recovery-runs must be positive")
	}
	if *recoveryWorker {
		cfg, err := e.config(*dbURL)
		if err != nil {
			return err
		}
		cfg.Workers = o.Workers
		pool, err := e.pool(cfg)
		if err != nil {
			return err
		}
		defer pool.Close()
		return bench.RecoveryWorker(e.ctx, pool, cfg, e.stdout)
	}
	if bo.Batches < 1 || bo.Size < 1 || bo.Size > 5000 {
		return usagef("--batches must be positive and --batch-size between 1 and 5000")
	}
	if ao.Appends < 100 || ao.Verify < ao.Appends {
		return usagef("--audit-appends must be at least 100 and --audit-verify at least as many")
	}
	if co.Waiting < 1000 || co.Runs < co.Waiting || co.Decisions < 100 || 2*co.Decisions > co.Waiting {
		return usagef("console sizes: --console-waiting at least 1000, no more than --console-runs; --console-decisions 100 to half of --console-waiting")
	}
	co.DeepRow = co.Waiting / 2
	cfg, err := e.config(*dbURL)
	if err != nil {
		return err
	}
	// Measure on a database of its own, made fresh for this run.
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		return usagef("DATABASE_URL: %v", err)
	}
	name := strings.TrimPrefix(u.Path, "/") + "_bench"
	u.Path = "/" + name
	cfg.DatabaseURL = u.String()
	cfg.Workers = o.Workers
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return usagef("--cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var rep *bench.Report
	var crep *bench.ConsoleReport
	var arep *bench.AuditReport
	var brep *bench.BatchReport
	var rrep *bench.RecoveryReport
	if *only == "" || *only == "engine" {
		if err := benchOn(e, cfg, name, func(pool *pgxpool.Pool) error {
			rep, err = bench.Run(e.ctx, pool, cfg.DatabaseURL, o, e.stderr)
			return err
		}); err != nil {
			return err
		}
	}
	if *only == "" || *only == "console" {
		if err := benchOn(e, cfg, name, func(pool *pgxpool.Pool) error {
			crep, err = bench.Console(e.ctx, pool, cfg.DatabaseURL, co, e.stderr)
			return err
		}); err != nil {
			return err
		}
	}
	if *only == "" || *only == "audit" {
		if err := benchOn(e, cfg, name, func(pool *pgxpool.Pool) error {
			arep, err = bench.Audit(e.ctx, pool, ao, e.stderr)
			return err
		}); err != nil {
			return err
		}
	}
	if *only == "" || *only == "batch" {
		if err := benchOn(e, cfg, name, func(pool *pgxpool.Pool) error {
			brep, err = bench.Batch(e.ctx, pool, cfg.DatabaseURL, bo, e.stderr)
			return err
		}); err != nil {
			return err
		}
	}
	if *only == "" || *only == "recovery" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		ro.Workers = o.Workers
		ro.Worker = func(dbURL string) *exec.Cmd {
			cmd := exec.CommandContext(e.ctx, exe, "bench", "--recovery-worker", "--database-url", dbURL, "--workers", strconv.Itoa(o.Workers))
			cmd.Stderr = e.stderr
			return cmd
		}
		if err := benchOn(e, cfg, name, func(pool *pgxpool.Pool) error {
			rrep, err = bench.Recovery(e.ctx, pool, cfg.DatabaseURL, ro, e.stderr)
			return err
		}); err != nil {
			return err
		}
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(map[string]any{"engine": rep, "console": crep, "audit": arep, "batch": brep, "recovery": rrep})
	}
	fmt.Fprintf(e.stdout, "| measure | result |\n|---|---|\n")
	if rep != nil {
		fmt.Fprintf(e.stdout, "| R: raw River no-op jobs/s | %.0f |\n", rep.RiverJobsPerS)
		fmt.Fprintf(e.stdout, "| P: minimal durable step writes/s (%d writers) | %.0f |\n", o.Workers, rep.BaselineSteps)
		fmt.Fprintf(e.stdout, "| engine: steps/s (six-step runs, auto gate) | %.0f |\n", rep.EngineSteps)
		fmt.Fprintf(e.stdout, "| engine: runs/s | %.0f |\n", rep.EngineRuns)
		fmt.Fprintf(e.stdout, "| engine steps/s ÷ P (target ≥ 0.50) | %.2f |\n", rep.StepRatio())
		fmt.Fprintf(e.stdout, "| engine runs/s ÷ R | %.3f |\n", rep.EngineRuns/rep.RiverJobsPerS)
		fmt.Fprintf(e.stdout, "| decision → resume p50 (target ≤ 10 ms) | %s |\n", ms(rep.ResumeP50))
		fmt.Fprintf(e.stdout, "| decision → resume p99 (target ≤ 100 ms) | %s |\n", ms(rep.ResumeP99))
		fmt.Fprintf(e.stdout, "| decision → resume max | %s |\n", ms(rep.ResumeMax))
	}
	if crep != nil {
		fmt.Fprintf(e.stdout, "| console: database | %d runs, %d waiting requests (loaded in %s) |\n", co.Runs, co.Waiting, crep.LoadTime.Round(time.Second))
		fmt.Fprintf(e.stdout, "| inbox first page p50 / p95 (target p95 ≤ 50 ms) | %s / %s |\n", ms(crep.InboxFirstP50), ms(crep.InboxFirstP95))
		fmt.Fprintf(e.stdout, "| inbox page after row %d p50 / p95 (target p95 ≤ 50 ms) | %s / %s |\n", co.DeepRow, ms(crep.InboxDeepP50), ms(crep.InboxDeepP95))
		fmt.Fprintf(e.stdout, "| inbox filtered (workflow, tier) p50 / p95 | %s / %s |\n", ms(crep.InboxFilterP50), ms(crep.InboxFilterP95))
		fmt.Fprintf(e.stdout, "| decision POST p50 / p99, 20 reviewers each deciding every %s (target p99 ≤ 50 ms) | %s / %s (%.0f/s) |\n", bench.Paced, ms(crep.PacedP50), ms(crep.PacedP99), crep.PacedPerS)
		fmt.Fprintf(e.stdout, "| decision POST p50 / p99, 20 reviewers without pause (capacity) | %s / %s (%.0f/s) |\n", ms(crep.DecisionP50), ms(crep.DecisionP99), crep.DecisionsPerS)
	}
	if arep != nil {
		fmt.Fprintf(e.stdout, "| audit: plain inserts of the same rows/s, 8 writers (baseline) | %.0f |\n", arep.BaselinePerS)
		fmt.Fprintf(e.stdout, "| audit appends/s, 8 writers, chainer running (target ≥ 2,000) | %.0f (%.2f of baseline) |\n", arep.AppendsPerS, arep.AppendsPerS/arep.BaselinePerS)
		fmt.Fprintf(e.stdout, "| audit: last append chained after | %s |\n", ms(arep.ChainLag))
		fmt.Fprintf(e.stdout, "| audit: events chained/s by one chainer | %.0f |\n", arep.ChainPerS)
		fmt.Fprintf(e.stdout, "| audit verify of %d events (target ≤ 10 s) | %s |\n", arep.VerifiedEvents, arep.VerifyTime.Round(10*time.Millisecond))
	}
	if brep != nil {
		fmt.Fprintf(e.stdout, "| batch decision of %d items, server time p50 / p95 over %d batches (target p95 ≤ 1 s) | %s / %s |\n",
			bo.Size, bo.Batches, ms(brep.ServerP50), ms(brep.ServerP95))
		fmt.Fprintf(e.stdout, "| batch: all %d resumed runs started after the commit, p50 / max (target ≤ 5 s) | %s / %s |\n",
			bo.Size, ms(brep.AllStartedP50), ms(brep.AllStartedMax))
	}
	if rrep != nil {
		fmt.Fprintf(e.stdout, "| recovery: SIGKILL → last of %d orphaned runs finished, default settings (target ≤ 30 s) | %s (first %s) |\n",
			rrep.Orphaned, rrep.LastOrphan.Round(10*time.Millisecond), rrep.FirstOrphan.Round(10*time.Millisecond))
		fmt.Fprintf(e.stdout, "| recovery: the same number of fresh runs on the second worker (baseline) | %s |\n", rrep.Baseline.Round(10*time.Millisecond))
		fmt.Fprintf(e.stdout, "| recovery: effects duplicated (must be 0) | %d |\n", rrep.DuplicateKeys)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// benchOn recreates the benchmark database, migrates it, and runs fn on it.
func benchOn(e *env, cfg config.Config, name string, fn func(*pgxpool.Pool) error) error {
	if err := recreate(e.ctx, cfg.DatabaseURL, name); err != nil {
		return err
	}
	pool, err := e.pool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Up(e.ctx, pool); err != nil {
		return err
	}
	return fn(pool)
}

// recreate drops and creates a database.
func recreate(ctx context.Context, dbURL, name string) error {
	u, _ := url.Parse(dbURL)
	u.Path = "/postgres"
	admin, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect to maintenance database: %w", err)
	}
	defer admin.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return err
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+ident)
	return err
}
