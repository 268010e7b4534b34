package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// RecoveryOptions size the crash-recovery benchmark.
type RecoveryOptions struct {
	Runs    int // runs started before the kill
	Workers int // River workers in each worker process
	// Worker returns the command that runs RecoveryWorker in a process of
	// its own on dbURL (the benchmark kills it with SIGKILL).
	Worker func(dbURL string) *exec.Cmd
}

// RecoveryReport holds the results.
type RecoveryReport struct {
	Options       RecoveryOptions
	Orphaned      int           // runs the killed worker held
	LastOrphan    time.Duration // SIGKILL → the last of them completed
	FirstOrphan   time.Duration // SIGKILL → the first of them completed
	Baseline      time.Duration // the same number of runs, fresh, on the second worker
	DuplicateKeys int           // effects that happened twice (must be 0)
}

// effectHold is how long the benchmark's effect takes: long enough that the
// kill finds every worker inside one.
const effectHold = 2 * time.Second

// registerCrash adds the benchmark workflow: a step, a slow effect on the
// demo outbox, a step. It prints a line when an effect starts.
func registerCrash(out io.Writer) func(*workflow.Registry, *ai.Offline) {
	return func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "bench_crash", func(ctx context.Context, in struct{ N int }) (int64, error) {
			n, err := workflow.Step(ctx, "prepare", func(context.Context) (int, error) { return in.N, nil })
			if err != nil {
				return 0, err
			}
			id, err := workflow.Effect(ctx, "send", func(ctx context.Context, ec workflow.EffectContext) (int64, error) {
				id, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), "bench", map[string]int{"n": n})
				if err != nil {
					return 0, err
				}
				if out != nil {
					fmt.Fprintln(out, "EFFECT_STARTED")
				}
				select {
				case <-time.After(effectHold):
				case <-ctx.Done():
					return 0, ctx.Err()
				}
				return id, nil
			})
			if err != nil {
				return 0, err
			}
			return workflow.Step(ctx, "finish", func(context.Context) (int64, error) { return id, nil })
		})
	}
}

// RecoveryWorker runs a worker process with default settings and the
// benchmark's workflow until ctx ends; Recovery starts it and kills it.
func RecoveryWorker(ctx context.Context, pool *pgxpool.Pool, cfg config.Config, stdout io.Writer) error {
	a, err := app.New(cfg, pool, app.Options{Worker: true, Register: registerCrash(stdout),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Recovery starts runs on a worker process, kills it with SIGKILL while every
// one of its workers is inside an effect, and times how long a second
// process, with default settings, takes to finish the runs the first held.
// The baseline is that second process finishing as many fresh runs.
func Recovery(ctx context.Context, pool *pgxpool.Pool, dbURL string, o RecoveryOptions, progress io.Writer) (*RecoveryReport, error) {
	b := &recoveryBench{ctx: ctx, pool: pool,
		cfg: config.Config{DatabaseURL: dbURL, Workers: o.Workers, RescueAfter: 15 * time.Minute, ModelProvider: "offline"}}
	victim, effects, err := startVictim(o, dbURL)
	if err != nil {
		return nil, err
	}
	defer func() { _ = victim.Process.Kill(); _ = victim.Wait() }()
	if b.starter, err = app.New(b.cfg, pool, app.Options{Register: registerCrash(nil), Logger: quietLogger()}); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "recovery: %d runs on a worker process of %d workers, SIGKILL mid-effect ...\n", o.Runs, o.Workers)
	if _, err := b.start("crash", o.Runs); err != nil {
		return nil, err
	}
	killed, err := killMidEffect(victim, effects, min(o.Workers, o.Runs))
	if err != nil {
		return nil, err
	}
	orphans, err := b.running()
	if err != nil {
		return nil, err
	}
	rep := &RecoveryReport{Options: o, Orphaned: len(orphans)}
	stop, err := b.startRescuer()
	if err != nil {
		return nil, err
	}
	defer stop()
	if rep.LastOrphan, err = b.waitAll(orphans, killed, &rep.FirstOrphan); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "recovery: baseline, %d fresh runs on the second worker ...\n", len(orphans))
	if rep.Baseline, err = b.baseline(max(len(orphans), 1)); err != nil {
		return nil, err
	}
	if rep.DuplicateKeys, err = store.OutboxDuplicates(ctx, pool); err != nil {
		return nil, err
	}
	return rep, nil
}

// recoveryBench is what the phases of Recovery share.
type recoveryBench struct {
	ctx     context.Context
	pool    *pgxpool.Pool
	cfg     config.Config
	starter *app.App // starts runs without working them, so the victim gets them all
}

// quietLogger keeps the benchmark's own processes out of its output.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startVictim starts the worker process that will be killed. Its effects
// announce themselves on its stdout: the kill must wait until every worker
// holds one, or the benchmark would not measure recovery from mid-effect.
func startVictim(o RecoveryOptions, dbURL string) (*exec.Cmd, <-chan struct{}, error) {
	cmd := o.Worker(dbURL)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start worker: %w", err)
	}
	effects := make(chan struct{}, o.Runs)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "EFFECT_STARTED") {
				effects <- struct{}{}
			}
		}
	}()
	return cmd, effects, nil
}

// start starts n runs of the benchmark workflow; prefix keeps business keys
// of the crash and the baseline runs apart.
func (b *recoveryBench) start(prefix string, n int) ([]string, error) {
	ids := make([]string, n)
	for i := range n {
		run, _, err := b.starter.Engine.Start(b.ctx, workflow.StartParams{Workflow: "bench_crash",
			BusinessKey: fmt.Sprintf("%s-%d", prefix, i), Input: json.RawMessage(fmt.Sprintf(`{"N":%d}`, i))})
		if err != nil {
			return nil, err
		}
		ids[i] = run.ID
	}
	return ids, nil
}

// killMidEffect waits for busy effects to start, then SIGKILLs the victim so
// that none of them can finish or clean up. It returns when the kill was sent,
// the clock the orphans' recovery is timed from.
func killMidEffect(cmd *exec.Cmd, effects <-chan struct{}, busy int) (time.Time, error) {
	for range busy {
		select {
		case <-effects:
		case <-time.After(60 * time.Second):
			return time.Time{}, fmt.Errorf("the worker process never started its effects")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return time.Time{}, err
	}
	killed := time.Now()
	_, _ = cmd.Process.Wait()
	return killed, nil
}

// running lists the runs the dead victim still held: they are the orphans the
// rescuer must finish.
func (b *recoveryBench) running() ([]string, error) {
	var orphans []string
	rows, err := b.pool.Query(b.ctx, `SELECT id::text FROM workflow_runs WHERE status = 'running'`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		orphans = append(orphans, id)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return orphans, nil
}

// startRescuer runs the second worker in this process with default settings,
// since default recovery is what the benchmark measures. stop ends it.
func (b *recoveryBench) startRescuer() (stop func(), err error) {
	second, err := app.New(b.cfg, b.pool, app.Options{Worker: true, Register: registerCrash(nil), Logger: quietLogger()})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(b.ctx)
	done := make(chan error, 1)
	go func() { done <- second.Run(runCtx) }()
	return func() { cancel(); <-done }, nil
}

// waitAll polls until every run in ids has completed and returns the time
// since from; first, when given and still zero, gets the time to the first.
func (b *recoveryBench) waitAll(ids []string, from time.Time, first *time.Duration) (time.Duration, error) {
	left := map[string]bool{}
	for _, id := range ids {
		left[id] = true
	}
	deadline := from.Add(5 * time.Minute)
	for len(left) > 0 {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d runs still unfinished after 5 minutes", len(left))
		}
		for id := range left {
			run, err := store.RunGet(b.ctx, b.pool, id)
			if err != nil {
				return 0, err
			}
			if run.Status == vocab.RunCompleted {
				delete(left, id)
				if first != nil && *first == 0 {
					*first = time.Since(from)
				}
			} else if run.Status.Final() {
				return 0, fmt.Errorf("run %s ended %s", id, run.Status)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(from), nil
}

// baseline times n fresh runs on the rescuer. The crash runs that were still
// queued at the kill drain first, or they would share its workers and slow it.
func (b *recoveryBench) baseline(n int) (time.Duration, error) {
	var remaining int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM workflow_runs WHERE status NOT IN ('completed', 'failed')`).Scan(&remaining); err != nil {
		return 0, err
	}
	for remaining > 0 {
		time.Sleep(50 * time.Millisecond)
		if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM workflow_runs WHERE status NOT IN ('completed', 'failed')`).Scan(&remaining); err != nil {
			return 0, err
		}
	}
	began := time.Now()
	fresh, err := b.start("fresh", n)
	if err != nil {
		return 0, err
	}
	return b.waitAll(fresh, began, nil)
}
