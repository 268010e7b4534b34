package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/bench"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/migrations"
)

// benchSuites are the suites of countersign bench, in the order they run
// and report.
var benchSuites = []string{"engine", "console", "audit", "batch", "recovery", "notice", "webhook", "approvals", "traces", "metrics"}

// benchFlags are the flags of countersign bench: the sizes of every suite.
type benchFlags struct {
	o              bench.Options
	ro             bench.RecoveryOptions
	bo             bench.BatchOptions
	ao             bench.AuditOptions
	co             bench.ConsoleOptions
	no             bench.NoticeOptions
	wo             bench.WebhookOptions
	apo            bench.ApprovalsOptions
	tro            bench.TracesOptions
	mo             bench.MetricsOptions
	asJSON         bool
	only           string
	recoveryWorker bool
	cpuProfile     string
}

// benchReports holds what each suite measured, nil for a suite not run. The
// fields are in the order of their JSON names, as a map would print them.
type benchReports struct {
	Approvals *bench.ApprovalsReport `json:"approvals"`
	Audit     *bench.AuditReport     `json:"audit"`
	Batch     *bench.BatchReport     `json:"batch"`
	Console   *bench.ConsoleReport   `json:"console"`
	Engine    *bench.Report          `json:"engine"`
	Metrics   *bench.MetricsReport   `json:"metrics"`
	Notice    *bench.NoticeReport    `json:"notice"`
	Recovery  *recoveryReport        `json:"recovery"`
	Traces    *bench.TracesReport    `json:"traces"`
	Webhook   *bench.WebhookReport   `json:"webhook"`
}

// recoveryReport is the recovery suite's report as JSON: its Options field
// hides the report's, whose worker command is a function that encoding/json
// refuses.
type recoveryReport struct {
	*bench.RecoveryReport
	Options struct{ Runs, Workers int }
}

func newRecoveryReport(rep *bench.RecoveryReport) *recoveryReport {
	r := &recoveryReport{RecoveryReport: rep}
	r.Options.Runs, r.Options.Workers = rep.Options.Runs, rep.Options.Workers
	return r
}

func cmdBench(e *env, args []string) error {
	fs, dbURL := e.flags("bench", "bench [--workers N] [--runs N] [--decisions N] [--json]")
	b := &benchFlags{}
	b.declare(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := b.checkCommon(); err != nil {
		return err
	}
	if b.recoveryWorker {
		return benchRecoveryWorker(e, *dbURL, b.o.Workers)
	}
	if err := b.checkSuites(); err != nil {
		return err
	}
	cfg, name, err := benchConfig(e, *dbURL, b.o.Workers)
	if err != nil {
		return err
	}
	if b.cpuProfile != "" {
		f, err := os.Create(b.cpuProfile)
		if err != nil {
			return usagef("--cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	r, err := b.run(e, cfg, name)
	if err != nil {
		return err
	}
	if b.asJSON {
		return json.NewEncoder(e.stdout).Encode(r)
	}
	b.print(e.stdout, r)
	return nil
}

func (b *benchFlags) declare(fs *flagSet) {
	fs.IntVar(&b.o.Workers, "workers", 20, "concurrency for every measurement")
	fs.IntVar(&b.o.RiverJobs, "river-jobs", 50000, "no-op jobs for the raw River baseline")
	fs.IntVar(&b.o.Steps, "steps", 20000, "step writes for the per-step baseline")
	fs.IntVar(&b.o.Runs, "runs", 2000, "six-step runs for engine throughput")
	fs.IntVar(&b.o.Samples, "samples", 3, "alternating samples of P and the engine throughput (medians reported)")
	fs.IntVar(&b.o.Decisions, "decisions", 1000, "decisions for the resume latency")
	fs.IntVar(&b.o.ScaleRuns, "scale-runs", 1_000_000, "ended runs loaded before the engine is measured again (0: skip)")
	fs.BoolVar(&b.asJSON, "json", false, "print the report as JSON")
	fs.StringVar(&b.only, "only", "", "run one suite: engine, console, audit, batch, recovery, notice, webhook, approvals, traces or metrics (default all)")
	fs.IntVar(&b.ro.Runs, "recovery-runs", 200, "runs started on the worker process that is killed")
	// The recovery suite runs its doomed worker as this command in a process
	// of its own; the flag is for that, not for people.
	fs.BoolVar(&b.recoveryWorker, "recovery-worker", false, "internal: be the recovery benchmark's worker process")
	fs.IntVar(&b.bo.Batches, "batches", 5, "1,000-item batch decisions to time")
	fs.IntVar(&b.bo.Size, "batch-size", 1000, "items per batch")
	b.ao.Writers = 8
	fs.IntVar(&b.ao.Appends, "audit-appends", 20000, "audit appends by 8 concurrent writers")
	fs.IntVar(&b.ao.Verify, "audit-verify", 1_000_000, "events in the chain audit verify walks")
	b.co.Reviewers, b.co.Samples = 20, 200
	fs.IntVar(&b.co.Runs, "console-runs", 1_000_000, "runs in the console benchmark's database")
	fs.IntVar(&b.co.Waiting, "console-waiting", 100_000, "of which waiting, each with a pending request")
	fs.IntVar(&b.co.Decisions, "console-decisions", 2000, "decision POSTs by 20 concurrent reviewers")
	fs.BoolVar(&b.co.Reuse, "console-reuse", false, "keep the console's database if an earlier run loaded it at these sizes (migrated up, not loaded again)")
	fs.IntVar(&b.no.Samples, "notice-samples", 200, "requests timed from commit to mail accepted")
	fs.IntVar(&b.no.Burst, "notice-burst", 1000, "requests in the notification burst")
	fs.DurationVar(&b.no.BurstTime, "notice-burst-time", 10*time.Second, "how long the burst is spread over")
	fs.IntVar(&b.no.Reviewers, "notice-reviewers", 5, "reviewers who hear of the burst")
	fs.IntVar(&b.wo.Deliveries, "webhook-deliveries", 2000, "webhook deliveries sent to a local receiver")
	fs.IntVar(&b.apo.Agents, "approvals-agents", 20, "concurrent agents filing approvals, each with its own token")
	fs.IntVar(&b.apo.Approvals, "approvals", 25, "approvals each agent files per tier (auto, explicit)")
	fs.IntVar(&b.apo.Paced, "approvals-paced", 50, "auto-tier approvals each agent files in the paced phase (0: skip it)")
	fs.DurationVar(&b.apo.Interval, "approvals-interval", 100*time.Millisecond, "mean time between one agent's approvals in the paced phase")
	fs.IntVar(&b.tro.Runs, "trace-runs", 1000, "six-step runs per round of the traces suite, traces off and on")
	fs.IntVar(&b.tro.Rounds, "trace-rounds", 2, "rounds of the traces suite (each: off, then on)")
	fs.IntVar(&b.mo.Runs, "metrics-runs", 1_000_000, "runs in the metrics benchmark's database")
	fs.IntVar(&b.mo.Waiting, "metrics-waiting", 100_000, "of which waiting, each with a pending request")
	fs.IntVar(&b.mo.Backlog, "metrics-backlog", 10_000, "River jobs ready and not picked up")
	fs.IntVar(&b.mo.Samples, "metrics-samples", 200, "scrapes of GET /metrics timed")
	fs.StringVar(&b.cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
}

// checkCommon checks the flags that the recovery worker process reads too.
func (b *benchFlags) checkCommon() error {
	o := b.o
	if o.Workers < 1 || o.RiverJobs < 1 || o.Steps < 1 || o.Runs < 1 || o.Samples < 1 || o.Decisions < 100 {
		return usagef("every size must be positive and --decisions at least 100")
	}
	if o.ScaleRuns < 0 {
		return usagef("--scale-runs must be 0 or more")
	}
	if b.only != "" && !slices.Contains(benchSuites, b.only) {
		return usagef("--only must be engine, console, audit, batch, recovery, notice, webhook, approvals, traces or metrics")
	}
	if b.ro.Runs < 1 {
		return usagef("--recovery-runs must be positive")
	}
	return nil
}

// checkSuites checks the sizes of the suites and derives the console's deep row.
func (b *benchFlags) checkSuites() error {
	bo, ao, co := b.bo, b.ao, b.co
	if bo.Batches < 1 || bo.Size < 1 || bo.Size > 5000 {
		return usagef("--batches must be positive and --batch-size between 1 and 5000")
	}
	if b.wo.Deliveries < 1 {
		return usagef("--webhook-deliveries must be positive")
	}
	if no := b.no; no.Samples < 1 || no.Burst < 1 || no.BurstTime <= 0 || no.Reviewers < 1 {
		return usagef("the notice sizes must be positive")
	}
	if ao.Appends < 100 || ao.Verify < ao.Appends {
		return usagef("--audit-appends must be at least 100 and --audit-verify at least as many")
	}
	if co.Waiting < 1000 || co.Runs < co.Waiting || co.Decisions < 100 || 2*co.Decisions > co.Waiting {
		return usagef("console sizes: --console-waiting at least 1000, no more than --console-runs; --console-decisions 100 to half of --console-waiting")
	}
	if mo := b.mo; mo.Waiting < 1 || mo.Runs < mo.Waiting || mo.Backlog < 0 || mo.Samples < 1 {
		return usagef("metrics sizes: --metrics-waiting at least 1 and no more than --metrics-runs, --metrics-samples positive")
	}
	if b.apo.Agents < 1 || b.apo.Approvals < 1 {
		return usagef("--approvals-agents and --approvals must be positive")
	}
	if b.apo.Paced < 0 || b.apo.Interval <= 0 {
		return usagef("--approvals-paced must be 0 or more and --approvals-interval positive")
	}
	if b.tro.Runs < 1 || b.tro.Rounds < 1 {
		return usagef("--trace-runs and --trace-rounds must be positive")
	}
	b.co.DeepRow = co.Waiting / 2
	return nil
}

// benchRecoveryWorker is the process the recovery suite starts and kills.
func benchRecoveryWorker(e *env, dbURL string, workers int) error {
	cfg, err := e.config(dbURL)
	if err != nil {
		return err
	}
	cfg.Workers = workers
	pool, err := e.pool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	return bench.RecoveryWorker(e.ctx, pool, cfg, e.stdout)
}

// benchConfig returns the configuration of the benchmark's own database,
// made fresh for each suite, and that database's name.
func benchConfig(e *env, dbURL string, workers int) (config.Config, string, error) {
	cfg, err := e.config(dbURL)
	if err != nil {
		return cfg, "", err
	}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		return cfg, "", usagef("DATABASE_URL: %v", err)
	}
	name := strings.TrimPrefix(u.Path, "/") + "_bench"
	u.Path = "/" + name
	cfg.DatabaseURL = u.String()
	cfg.Workers = workers
	return cfg, name, nil
}

// run runs the chosen suites, each on a database of its own.
func (b *benchFlags) run(e *env, cfg config.Config, name string) (*benchReports, error) {
	r := &benchReports{}
	dbURL := cfg.DatabaseURL
	suites := map[string]func(pool *pgxpool.Pool) error{
		"engine": func(pool *pgxpool.Pool) (err error) {
			r.Engine, err = bench.Run(e.ctx, pool, dbURL, b.o, e.stderr)
			return err
		},
		"console": func(pool *pgxpool.Pool) (err error) {
			r.Console, err = bench.Console(e.ctx, pool, dbURL, b.co, e.stderr)
			return err
		},
		"audit": func(pool *pgxpool.Pool) (err error) {
			r.Audit, err = bench.Audit(e.ctx, pool, b.ao, e.stderr)
			return err
		},
		"batch": func(pool *pgxpool.Pool) (err error) {
			r.Batch, err = bench.Batch(e.ctx, pool, dbURL, b.bo, e.stderr)
			return err
		},
		"notice": func(pool *pgxpool.Pool) (err error) {
			r.Notice, err = bench.Notice(e.ctx, pool, dbURL, b.no, e.stderr)
			return err
		},
		"webhook": func(pool *pgxpool.Pool) (err error) {
			wo := b.wo
			wo.RiverJobs, wo.Workers = b.o.RiverJobs, b.o.Workers
			r.Webhook, err = bench.Webhook(e.ctx, pool, dbURL, wo, e.stderr)
			return err
		},
		"recovery": func(pool *pgxpool.Pool) error {
			rep, err := bench.Recovery(e.ctx, pool, dbURL, b.ro, e.stderr)
			if err != nil {
				return err
			}
			r.Recovery = newRecoveryReport(rep)
			return nil
		},
		"metrics": func(pool *pgxpool.Pool) (err error) {
			r.Metrics, err = bench.Metrics(e.ctx, pool, dbURL, b.mo, e.stderr)
			return err
		},
		"approvals": func(pool *pgxpool.Pool) (err error) {
			r.Approvals, err = bench.Approvals(e.ctx, pool, dbURL, b.apo, e.stderr)
			return err
		},
		"traces": func(pool *pgxpool.Pool) (err error) {
			tro := b.tro
			tro.Workers = b.o.Workers
			r.Traces, err = bench.Traces(e.ctx, pool, dbURL, tro, e.stderr)
			return err
		},
	}
	for _, s := range benchSuites {
		if b.only != "" && b.only != s {
			continue
		}
		if s == "recovery" {
			if err := b.recoveryWorkerCmd(e); err != nil {
				return nil, err
			}
		}
		keep := s == "console" && b.co.Reuse
		if err := benchOn(e, cfg, name, keep, suites[s]); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// recoveryWorkerCmd sets how the recovery suite starts its worker process:
// this executable, as bench --recovery-worker.
func (b *benchFlags) recoveryWorkerCmd(e *env) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	workers := b.o.Workers
	b.ro.Workers = workers
	b.ro.Worker = func(dbURL string) *exec.Cmd {
		cmd := exec.CommandContext(e.ctx, exe, "bench", "--recovery-worker", "--database-url", dbURL, "--workers", strconv.Itoa(workers))
		cmd.Stderr = e.stderr
		return cmd
	}
	return nil
}

// print writes the reports as a Markdown table, a section per suite run.
func (b *benchFlags) print(w io.Writer, r *benchReports) {
	fmt.Fprintf(w, "| measure | result |\n|---|---|\n")
	if r.Engine != nil {
		printEngine(w, r.Engine, b.o)
	}
	if r.Console != nil {
		printConsole(w, r.Console, b.co)
	}
	if r.Audit != nil {
		printAudit(w, r.Audit)
	}
	if r.Batch != nil {
		printBatch(w, r.Batch, b.bo)
	}
	if r.Recovery != nil {
		printRecovery(w, r.Recovery.RecoveryReport)
	}
	if r.Webhook != nil {
		fmt.Fprintf(w, "| webhook: raw River no-op jobs/s (baseline) | %.0f |\n", r.Webhook.RiverJobsPerS)
		fmt.Fprintf(w, "| webhook: deliveries/s to a local receiver, %d signed POSTs, each attempt recorded | %.0f (%.3f× River) |\n",
			r.Webhook.Options.Deliveries, r.Webhook.DeliveriesPerS, r.Webhook.Ratio())
	}
	if r.Notice != nil {
		printNotice(w, r.Notice)
	}
	if r.Approvals != nil {
		printApprovals(w, r.Approvals)
	}
	if t := r.Traces; t != nil {
		fmt.Fprintf(w, "| traces: engine runs/s, traces off (baseline, best of %d rounds of %d) | %.0f |\n", t.Options.Rounds, t.Options.Runs, t.OffRunsPerS)
		fmt.Fprintf(w, "| traces: engine runs/s, traces on, OTLP/HTTP to a local receiver | %.0f (%.2f× off) |\n", t.OnRunsPerS, t.Ratio())
		fmt.Fprintf(w, "| traces: CPU per run, off / on | %s / %s (%.2f× off) |\n", t.OffCPUPerRun.Round(time.Microsecond), t.OnCPUPerRun.Round(time.Microsecond), t.CPURatio())
		fmt.Fprintf(w, "| traces: spans per six-step run | %.0f |\n", t.SpansPerRun)
	}
	if r.Metrics != nil {
		printMetrics(w, r.Metrics)
	}
}

func printMetrics(w io.Writer, m *bench.MetricsReport) {
	o := m.Options
	fmt.Fprintf(w, "| metrics: database | %d runs, %d waiting requests, %d ready jobs; rollups %d totals, %d hourly rows, %d daily rows (loaded in %s) |\n",
		o.Runs, o.Waiting, o.Backlog, m.TotalsRows, m.HourRows, m.DayRows, m.LoadTime.Round(time.Second))
	fmt.Fprintf(w, "| metrics: load average before / after | %s / %s |\n", m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(w, "| metrics: GET /readyz p50 / p95 (baseline: one database round trip) | %s / %s |\n", ms(m.BaselineP50), ms(m.BaselineP95))
	fmt.Fprintf(w, "| metrics: GET /metrics p50 / p95, %d scrapes of %d bytes (target p95 ≤ 50 ms) | %s / %s (p95 %.1f× baseline) |\n",
		o.Samples, m.Bytes, ms(m.ScrapeP50), ms(m.ScrapeP95), ratio(m.ScrapeP95, m.BaselineP95))
	for _, d := range m.Dashboards {
		fmt.Fprintf(w, "| dashboard: GET %s p50 / p95, %d pages of %d bytes (target p95 ≤ 200 ms) | %s / %s (p95 %.1f× baseline) |\n",
			d.Path, d.Pages, d.Bytes, ms(d.P50), ms(d.P95), ratio(d.P95, m.BaselineP95))
	}
}

func printNotice(w io.Writer, n *bench.NoticeReport) {
	fmt.Fprintf(w, "| notice: mail handed straight to the SMTP server p50 / p99 (baseline) | %s / %s |\n", ms(n.DirectP50), ms(n.DirectP99))
	fmt.Fprintf(w, "| notice: request committed → mail accepted p50 / p99 / max, %d requests (target p99 ≤ 2 s) | %s / %s / %s (p99 %.0f× baseline) |\n",
		n.Options.Samples, ms(n.MailP50), ms(n.MailP99), ms(n.MailMax), float64(n.MailP99)/float64(max(n.DirectP99, time.Microsecond)))
	fmt.Fprintf(w, "| notice: %d requests in %s to %d reviewers: messages per reviewer / events carried | %v / %v |\n",
		n.Options.Burst, n.BurstSpread.Round(100*time.Millisecond), n.Options.Reviewers, n.BurstMessages, n.BurstItems)
	fmt.Fprintf(w, "| notice: most messages to one reviewer within a minute / shortest gap between two (target: one a minute) | %d / %s |\n", n.MaxPerMinute, n.MinSpacing.Round(10*time.Millisecond))
	fmt.Fprintf(w, "| notice: last request → last digest | %s |\n", n.LastDigestWait.Round(100*time.Millisecond))
}

func printEngine(w io.Writer, rep *bench.Report, o bench.Options) {
	fmt.Fprintf(w, "| R: raw River no-op jobs/s | %.0f |\n", rep.RiverJobsPerS)
	fmt.Fprintf(w, "| P: minimal durable step writes/s (%d writers), median of %d | %.0f |\n", o.Workers, len(rep.BaselineSamples), rep.BaselineSteps)
	fmt.Fprintf(w, "| engine: steps/s (six-step runs, auto gate), median | %.0f |\n", rep.EngineSteps)
	fmt.Fprintf(w, "| engine: runs/s, median | %.0f |\n", rep.EngineRuns)
	fmt.Fprintf(w, "| samples, in order: P → engine steps/s (ratio) | %s |\n", samples(rep.BaselineSamples, rep.EngineSamples))
	fmt.Fprintf(w, "| engine steps/s ÷ P, median of the samples' ratios (target ≥ 0.40) | %.2f |\n", rep.StepRatio())
	fmt.Fprintf(w, "| engine runs/s ÷ R | %.3f |\n", rep.EngineRuns/rep.RiverJobsPerS)
	fmt.Fprintf(w, "| decision → resume p50 (target ≤ 10 ms) | %s |\n", ms(rep.ResumeP50))
	fmt.Fprintf(w, "| decision → resume p99 (target ≤ 10 ms) | %s |\n", ms(rep.ResumeP99))
	fmt.Fprintf(w, "| decision → resume max | %s |\n", ms(rep.ResumeMax))
	if s := rep.Scale; s != nil {
		fmt.Fprintf(w, "| engine at scale: database | %d ended runs, %d steps, %d requests, %d audit events (loaded in %s, VACUUM ANALYZE in %s) |\n",
			s.Runs, s.Steps, s.Requests, s.Events, s.LoadTime.Round(time.Second), s.VacuumTime.Round(time.Second))
		fmt.Fprintf(w, "| engine at scale: P measured again, median | %.0f (%.2f of the first) |\n", s.BaselineSteps, s.BaselineSteps/rep.BaselineSteps)
		fmt.Fprintf(w, "| engine at scale: samples, in order: P → engine steps/s (ratio) | %s |\n", samples(s.BaselineSamples, s.EngineSamples))
		fmt.Fprintf(w, "| engine at scale: steps/s, median; ÷ P, median of the samples' ratios | %.0f (%.2f) |\n", s.EngineSteps, s.StepRatio())
		fmt.Fprintf(w, "| engine at scale ÷ engine fresh, each ÷ its P (target ≥ 0.80) | %.2f (%.2f without P) |\n", s.Ratio(rep), s.EngineSteps/rep.EngineSteps)
		fmt.Fprintf(w, "| engine at scale: buffers of workflow_runs' indexes per run (all but workflow_runs_workflow) | %.0f |\n", s.IndexBuffersPerRun)
	}
}

func printConsole(w io.Writer, crep *bench.ConsoleReport, co bench.ConsoleOptions) {
	fmt.Fprintf(w, "| console: database | %d runs, %d waiting requests (loaded in %s) |\n", co.Runs, co.Waiting, crep.LoadTime.Round(time.Second))
	fmt.Fprintf(w, "| inbox first page p50 / p95 (target p95 ≤ 50 ms) | %s / %s |\n", ms(crep.InboxFirstP50), ms(crep.InboxFirstP95))
	fmt.Fprintf(w, "| inbox page after row %d p50 / p95 (target p95 ≤ 50 ms) | %s / %s |\n", co.DeepRow, ms(crep.InboxDeepP50), ms(crep.InboxDeepP95))
	fmt.Fprintf(w, "| inbox filtered (workflow, tier) p50 / p95 | %s / %s |\n", ms(crep.InboxFilterP50), ms(crep.InboxFilterP95))
	fmt.Fprintf(w, "| inbox \"I can decide\" p50 / p95 | %s / %s (%.2f of the first page) |\n", ms(crep.InboxCanP50), ms(crep.InboxCanP95), ratio(crep.InboxCanP95, crep.InboxFirstP95))
	fmt.Fprintf(w, "| inbox \"Claimed by me\", %d claimed, p50 / p95 | %s / %s (%.2f of the first page) |\n", bench.ClaimedRequests, ms(crep.InboxClaimedP50), ms(crep.InboxClaimedP95), ratio(crep.InboxClaimedP95, crep.InboxFirstP95))
	worst := bench.FilterTiming{}
	for _, f := range crep.Filters {
		q := f.Query
		if q == "" {
			q = "(none)"
		}
		fmt.Fprintf(w, "| inbox filter %s p50 / p95 (target p95 ≤ 20 ms) | %s / %s (unfiltered alongside %s / %s; p95 %.2f of it) |\n",
			q, ms(f.P50), ms(f.P95), ms(f.BaseP50), ms(f.BaseP95), ratio(f.P95, f.BaseP95))
		if f.P95 > worst.P95 {
			worst = f
		}
	}
	if len(crep.Filters) > 0 {
		fmt.Fprintf(w, "| inbox filters: worst p95 of %d combinations (target ≤ 20 ms) | %s (%s; %.2f of the first page) |\n",
			len(crep.Filters), ms(worst.P95), worst.Query, ratio(worst.P95, crep.InboxFirstP95))
	}
	fmt.Fprintf(w, "| decision POST p50 / p99, 20 reviewers each deciding every %s (target p99 ≤ 50 ms) | %s / %s (%.0f/s) |\n", bench.Paced, ms(crep.PacedP50), ms(crep.PacedP99), crep.PacedPerS)
	fmt.Fprintf(w, "| decision POST p50 / p99, 20 reviewers without pause (capacity) | %s / %s (%.0f/s) |\n", ms(crep.DecisionP50), ms(crep.DecisionP99), crep.DecisionsPerS)
}

func printAudit(w io.Writer, arep *bench.AuditReport) {
	fmt.Fprintf(w, "| audit: plain inserts of the same rows/s, 8 writers (baseline) | %.0f |\n", arep.BaselinePerS)
	fmt.Fprintf(w, "| audit appends/s, 8 writers, chainer running (target ≥ 2,000) | %.0f (%.2f of baseline) |\n", arep.AppendsPerS, arep.AppendsPerS/arep.BaselinePerS)
	fmt.Fprintf(w, "| audit: last append chained after | %s |\n", ms(arep.ChainLag))
	fmt.Fprintf(w, "| audit: events chained/s by one chainer | %.0f |\n", arep.ChainPerS)
	fmt.Fprintf(w, "| audit verify of %d events (target ≤ 10 s) | %s |\n", arep.VerifiedEvents, arep.VerifyTime.Round(10*time.Millisecond))
}

func printBatch(w io.Writer, brep *bench.BatchReport, bo bench.BatchOptions) {
	fmt.Fprintf(w, "| batch decision of %d items, server time p50 / p95 over %d batches (target p95 ≤ 1 s) | %s / %s |\n",
		bo.Size, bo.Batches, ms(brep.ServerP50), ms(brep.ServerP95))
	fmt.Fprintf(w, "| batch: all %d resumed runs started after the commit, p50 / max (target ≤ 5 s) | %s / %s |\n",
		bo.Size, ms(brep.AllStartedP50), ms(brep.AllStartedMax))
}

func printRecovery(w io.Writer, rrep *bench.RecoveryReport) {
	fmt.Fprintf(w, "| recovery: SIGKILL → last of %d orphaned runs finished, default settings (target ≤ 30 s) | %s (first %s) |\n",
		rrep.Orphaned, rrep.LastOrphan.Round(10*time.Millisecond), rrep.FirstOrphan.Round(10*time.Millisecond))
	fmt.Fprintf(w, "| recovery: the same number of fresh runs on the second worker (baseline) | %s |\n", rrep.Baseline.Round(10*time.Millisecond))
	fmt.Fprintf(w, "| recovery: effects duplicated (must be 0) | %d |\n", rrep.DuplicateKeys)
}

func printApprovals(w io.Writer, a *bench.ApprovalsReport) {
	o := a.Options
	fmt.Fprintf(w, "| approvals: %d agents × %d approvals per tier; load average before / after | %s / %s |\n", o.Agents, o.Approvals, a.LoadBefore, a.LoadAfter)
	fmt.Fprintf(w, "| approvals: GET /api/v1/approvals/{id} of a decided one p50 / p99 (baseline) | %s / %s |\n", ms(a.BaselineP50), ms(a.BaselineP99))
	fmt.Fprintf(w, "| approvals: one committed single-row INSERT p50 / p99 (durable-write floor) | %s / %s |\n", ms(a.CommitP50), ms(a.CommitP99))
	fmt.Fprintf(w, "| approvals: one agent alone, auto-tier POST p50 / GET p50 | %s / %s (%.2f) |\n", ms(a.SoloAutoP50), ms(a.SoloGetP50), ratio(a.SoloAutoP50, a.SoloGetP50))
	fmt.Fprintf(w, "| approvals: statements / commits per auto-tier POST, per GET | %.1f / %.1f, %.1f / %.1f |\n", a.AutoStatements, a.AutoCommits, a.GetStatements, a.GetCommits)
	if a.PacedRan() {
		fmt.Fprintf(w, "| auto-tier POST, %d agents each filing one every %s on average (Poisson; %.0f POSTs/s in all), p50 / p99 / max (target p99 ≤ 20 ms) | %s / %s / %s (p99 %.2f × the GET's %s, %.2f × the commit's %s) |\n",
			o.Agents, o.Interval, a.PacedRate, ms(a.PacedP50), ms(a.PacedP99), ms(a.PacedMax), ratio(a.PacedP99, a.PacedGetP99), ms(a.PacedGetP99),
			ratio(a.PacedP99, a.PacedCommitP99), ms(a.PacedCommitP99))
	}
	fmt.Fprintf(w, "| auto-tier POST, %d agents in a closed loop (each files the next at once: saturation) p50 / p99 | %s / %s (p99 %.2f × the GET, %.2f × the commit) |\n", o.Agents, ms(a.AutoP50), ms(a.AutoP99), ratio(a.AutoP99, a.BaselineP99), ratio(a.AutoP99, a.CommitP99))
	fmt.Fprintf(w, "| approvals: bare pg_notify committed → its event on the reviewer's live stream p50 / p99 (live baseline) | %s / %s |\n", ms(a.NotifyP50), ms(a.NotifyP99))
	fmt.Fprintf(w, "| explicit: 202 → \"inbox\" event on the reviewer's live stream p50 / p99 | %s / %s (p99 %.1f × notify) |\n", ms(a.EventP50), ms(a.EventP99), ratio(a.EventP99, a.NotifyP99))
	fmt.Fprintf(w, "| explicit: 202 → row in the open inbox p50 / p99 / max (target p99 ≤ 200 ms) | %s / %s / %s (p99 %.1f × notify, %.1f × the GET) |\n", ms(a.VisibleP50), ms(a.VisibleP99), ms(a.VisibleMax), ratio(a.VisibleP99, a.NotifyP99), ratio(a.VisibleP99, a.BaselineP99))
	fmt.Fprintf(w, "| decision response → long poll returns p50 / p99 (target p99 ≤ 50 ms) | %s / %s (p99 %.1f × notify, %.2f × the GET) |\n", ms(a.PollP50), ms(a.PollP99), ratio(a.PollP99, a.NotifyP99), ratio(a.PollP99, a.BaselineP99))
	fmt.Fprintf(w, "| decided_at (in the decision's transaction) → long poll returns p50 / p99 | %s / %s |\n", ms(a.PollCommitP50), ms(a.PollCommitP99))
	fmt.Fprintf(w, "| decision response → callback delivered p50 / p99 / max (target p99 ≤ 1 s) | %s / %s / %s (p99 %.1f × the GET) |\n", ms(a.CallbackP50), ms(a.CallbackP99), ms(a.CallbackMax), ratio(a.CallbackP99, a.BaselineP99))
}

// ratio is a/b, 0 when b is.
func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

// benchOn recreates the benchmark database (keep: creates it only if
// missing, for --console-reuse), migrates it, and runs fn on it.
func benchOn(e *env, cfg config.Config, name string, keep bool, fn func(*pgxpool.Pool) error) error {
	if keep {
		if err := ensure(e.ctx, cfg.DatabaseURL, name); err != nil {
			return err
		}
	} else if err := recreate(e.ctx, cfg.DatabaseURL, name); err != nil {
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

// maintenance connects to the server's maintenance database, from which a
// benchmark's own database is created or dropped.
func maintenance(ctx context.Context, dbURL string) (*pgx.Conn, error) {
	u, _ := url.Parse(dbURL)
	u.Path = "/postgres"
	admin, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("connect to maintenance database: %w", err)
	}
	return admin, nil
}

// ensure creates a database unless it exists.
func ensure(ctx context.Context, dbURL, name string) error {
	admin, err := maintenance(ctx, dbURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil || exists {
		return err
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// recreate drops and creates a database.
func recreate(ctx context.Context, dbURL, name string) error {
	admin, err := maintenance(ctx, dbURL)
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return err
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+ident)
	return err
}

// samples lists the engine suite's alternating samples of P and the
// engine, each with its ratio.
func samples(baseline, engine []float64) string {
	var parts []string
	for i, e := range engine {
		p := baseline[i]
		parts = append(parts, fmt.Sprintf("%.0f → %.0f (%.2f)", p, e, e/p))
	}
	return strings.Join(parts, "; ")
}
