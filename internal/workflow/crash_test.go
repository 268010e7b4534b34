package workflow_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// prepared is the pure step's result in slow_effect: the process that ran it.
type prepared struct {
	N   int `json:"n"`
	PID int `json:"pid"`
}

// slowEffects is a workflow whose effect step takes a while, so that a worker
// can be killed in the middle of it: a model call (recorded at once), a pure
// step (held in memory and recorded with the effect), the effect.
func slowEffects(r *workflow.Registry, m *ai.Offline) {
	m.Handle("slow_plan", func(json.RawMessage) (any, error) { return map[string]int{"step": 1}, nil })
	workflow.Register(r, "slow_effect", func(ctx context.Context, in struct{ N int }) (int64, error) {
		plan, err := workflow.Generate[map[string]int](ctx, "plan", ai.Request{Task: "slow_plan"})
		if err != nil {
			return 0, err
		}
		p, err := workflow.Step(ctx, "prepare", func(context.Context) (prepared, error) {
			return prepared{N: in.N * plan["step"], PID: os.Getpid()}, nil
		})
		if err != nil {
			return 0, err
		}
		return workflow.Effect(ctx, "send", func(ctx context.Context, ec workflow.EffectContext) (int64, error) {
			id, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), "send", map[string]int{"n": p.N})
			if err != nil {
				return 0, err
			}
			// Announce the effect is under way, then take long enough to be killed.
			fmt.Println("EFFECT_STARTED")
			select {
			case <-time.After(1500 * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return id, nil
		})
	})
}

// TestMain lets this test binary double as a worker process for the crash test.
func TestMain(m *testing.M) {
	if url := os.Getenv("CS_CRASH_WORKER_DB"); url != "" {
		runCrashWorker(url)
		return
	}
	os.Exit(m.Run())
}

// runCrashWorker is the worker process of the crash tests: default settings
// unless the test sets CS_CRASH_LEASE (lease, renewal and sweep scaled from it)
// or CS_CRASH_MAX_RECOVERIES.
func runCrashWorker(url string) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		panic(err)
	}
	var rec app.Recovery
	if v := os.Getenv("CS_CRASH_LEASE"); v != "" {
		lease, err := time.ParseDuration(v)
		if err != nil {
			panic(err)
		}
		rec = app.Recovery{Lease: lease, RenewEvery: lease / 3, SweepEvery: lease / 3}
	}
	if v := os.Getenv("CS_CRASH_MAX_RECOVERIES"); v != "" {
		if rec.MaxRecoveries, err = strconv.Atoi(v); err != nil {
			panic(err)
		}
	}
	cfg := config.Config{DatabaseURL: url, Workers: 10, RescueAfter: 15 * time.Minute, ModelProvider: "offline"}
	a, err := app.New(cfg, pool, app.Options{Worker: true, Register: crashWorkflows, Recovery: rec,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		panic(err)
	}
	if err := a.Run(ctx); err != nil {
		panic(err)
	}
}

// crashWorker starts a worker process on url; effectStarted is closed when
// it announces its first effect.
func crashWorker(t *testing.T, url string, env ...string) (cmd *exec.Cmd, effectStarted <-chan struct{}) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "CS_CRASH_WORKER_DB="+url), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "EFFECT_STARTED") {
				close(started)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	return cmd, started
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_, _ = cmd.Process.Wait()
}

func startSlowEffects(t *testing.T, e *workflow.Engine, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		run, _, err := e.Start(context.Background(), workflow.StartParams{Workflow: "slow_effect",
			BusinessKey: fmt.Sprintf("%s-%d", prefix, i), Input: json.RawMessage(fmt.Sprintf(`{"N":%d}`, i))})
		require.NoError(t, err)
		ids[i] = run.ID
	}
	return ids
}

type stepStamp struct {
	RunID    string
	Seq      int
	Attempts int
	Finished time.Time
}

// recordedSteps lists the completed step records: a step that ran again
// would rewrite its row's finish time.
func recordedSteps(t *testing.T, pool *pgxpool.Pool) []stepStamp {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT run_id::text, seq, attempts, finished_at
		FROM workflow_steps WHERE status = 'completed' ORDER BY run_id, seq`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stepStamp])
	require.NoError(t, err)
	return out
}

// TestCrashRecovery kills a worker with SIGKILL in the middle of its runs'
// effects, with every setting at its default (River's rescuer would wait 15
// minutes), and requires a second worker to finish every orphaned run within
// 30 seconds, each effect happening exactly once and no recorded step again.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test waits for a lapsed lease")
	}
	t.Parallel()
	pool, url := testdb.Pool(t)
	ctx := context.Background()

	// Worker A: a separate process, killed with SIGKILL mid-effect.
	a, started := crashWorker(t, url)
	// Start runs through an insert-only process on the same database.
	starter := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: slowEffects})
	const runs = 6
	ids := startSlowEffects(t, starter.Engine, "crash", runs)
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("worker A never reached the effect")
	}
	kill(t, a)
	killed := time.Now()
	before := recordedSteps(t, pool)
	require.NotEmpty(t, before, "worker A recorded model calls before it died")

	var running int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'running'`).Scan(&running))
	require.Positive(t, running, "the kill left jobs stuck in running")

	// Worker B, with default settings, picks up every orphaned run.
	b := testapp.StartOn(t, pool, url, testapp.Options{Register: slowEffects})
	for _, id := range ids {
		run := b.WaitRunWithin(t, id, 30*time.Second-time.Since(killed), vocab.RunCompleted)
		require.Equal(t, vocab.RunCompleted, run.Status)
		require.Zero(t, run.Failures, "a crash spends no error attempt")
	}
	t.Logf("SIGKILL -> last orphaned run completed: %s", time.Since(killed).Round(time.Millisecond))
	require.Less(t, time.Since(killed), 30*time.Second)

	var rows, keys int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT idempotency_key) FROM demo_outbox`).Scan(&rows, &keys))
	require.Equal(t, runs, rows, "each effect happened exactly once")
	require.Equal(t, runs, keys)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM side_effects`).Scan(&rows))
	require.Equal(t, runs, rows)
	after := map[stepStamp]bool{}
	for _, s := range recordedSteps(t, pool) {
		after[s] = true
	}
	for _, s := range before {
		require.True(t, after[s], "step %d of run %s was recorded before the crash and ran again", s.Seq, s.RunID)
	}
	// The pure step before each effect was held in memory by worker A and
	// died with it: worker B ran it again, and only it.
	for _, id := range ids {
		steps, err := store.StepList(ctx, pool, id)
		require.NoError(t, err)
		require.Len(t, steps, 3)
		require.Equal(t, vocab.StepKindModel, steps[0].Kind)
		var p prepared
		require.NoError(t, json.Unmarshal(steps[1].Output, &p))
		require.NotEqual(t, a.Process.Pid, p.PID, "run %s: the pure step's record outlived the worker that held it", id)
	}
	var recovered int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE kind = 'run.recovered'
		AND details->>'cause' IN ('lease_expired', 'worker_lost_before_claim')`).Scan(&recovered))
	require.Positive(t, recovered)
}

// TestCrashEveryAttempt kills the worker each time it reaches the run's
// effect: the run is handed on MaxRecoveries times and then fails as
// worker_lost, never stuck and never with a committed effect.
func TestCrashEveryAttempt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills several worker processes")
	}
	t.Parallel()
	pool, url := testdb.Pool(t)
	ctx := context.Background()
	starter := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: slowEffects})
	id := startSlowEffects(t, starter.Engine, "doomed", 1)[0]

	kills := 0
	for kills < 6 {
		w, started := crashWorker(t, url, "CS_CRASH_LEASE=900ms", "CS_CRASH_MAX_RECOVERIES=2")
		final := ""
		for final == "" {
			select {
			case <-started:
				final = "effect"
			case <-time.After(50 * time.Millisecond):
				run, err := store.RunGet(ctx, pool, id)
				require.NoError(t, err)
				if run.Status.Final() {
					final = string(run.Status)
				}
			}
		}
		kill(t, w)
		if final != "effect" {
			break
		}
		kills++
	}
	run, err := store.RunGet(ctx, pool, id)
	require.NoError(t, err)
	require.Equal(t, vocab.RunFailed, run.Status)
	require.Equal(t, "worker_lost", *run.ErrorCode)
	require.Equal(t, 3, kills, "handed on twice, then failed at the third loss")
	require.Equal(t, 2, run.Recoveries)
	require.Zero(t, run.Failures)
	var effects, recovered int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM demo_outbox`).Scan(&effects))
	require.Zero(t, effects, "every effect was rolled back with its worker")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE kind = 'run.recovered' AND run_id = $1`, id).Scan(&recovered))
	require.Equal(t, 2, recovered)
}
