package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/bench"
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
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.Workers < 1 || o.RiverJobs < 1 || o.Steps < 1 || o.Runs < 1 || o.Decisions < 100 {
		return usagef("every size must be positive and --decisions at least 100")
	}
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
	if err := recreate(e.ctx, cfg.DatabaseURL, name); err != nil {
		return err
	}
	cfg.Workers = o.Workers
	pool, err := e.pool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Up(e.ctx, pool); err != nil {
		return err
	}
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
	rep, err := bench.Run(e.ctx, pool, cfg.DatabaseURL, o, e.stderr)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(e.stdout).Encode(rep)
	}
	fmt.Fprintf(e.stdout, "| measure | result |\n|---|---|\n")
	fmt.Fprintf(e.stdout, "| R: raw River no-op jobs/s | %.0f |\n", rep.RiverJobsPerS)
	fmt.Fprintf(e.stdout, "| P: minimal durable step writes/s (%d writers) | %.0f |\n", o.Workers, rep.BaselineSteps)
	fmt.Fprintf(e.stdout, "| engine: steps/s (six-step runs, auto gate) | %.0f |\n", rep.EngineSteps)
	fmt.Fprintf(e.stdout, "| engine: runs/s | %.0f |\n", rep.EngineRuns)
	fmt.Fprintf(e.stdout, "| engine steps/s ÷ P (target ≥ 0.50) | %.2f |\n", rep.StepRatio())
	fmt.Fprintf(e.stdout, "| engine runs/s ÷ R | %.3f |\n", rep.EngineRuns/rep.RiverJobsPerS)
	fmt.Fprintf(e.stdout, "| decision → resume p50 (target ≤ 10 ms) | %s |\n", rep.ResumeP50.Round(10e3))
	fmt.Fprintf(e.stdout, "| decision → resume p99 (target ≤ 100 ms) | %s |\n", rep.ResumeP99.Round(10e3))
	fmt.Fprintf(e.stdout, "| decision → resume max | %s |\n", rep.ResumeMax.Round(10e3))
	return nil
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
