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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
)

// slowEffects is a workflow whose effect step takes a while, so that a worker
// can be killed in the middle of it.
func slowEffects(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "slow_effect", func(ctx context.Context, in struct{ N int }) (int64, error) {
		n, err := workflow.Step(ctx, "prepare", func(context.Context) (int, error) { return in.N, nil })
		if err != nil {
			return 0, err
		}
		return workflow.Effect(ctx, "send", func(ctx context.Context, ec workflow.EffectContext) (int64, error) {
			id, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), "send", map[string]int{"n": n})
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

func runCrashWorker(url string) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		panic(err)
	}
	cfg := config.Config{DatabaseURL: url, Workers: 10, RescueAfter: 15 * time.Minute, ModelProvider: "offline"}
	a, err := app.New(cfg, pool, app.Options{Worker: true, Register: slowEffects,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		panic(err)
	}
	if err := a.Run(ctx); err != nil {
		panic(err)
	}
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test waits for River's rescuer")
	}
	t.Parallel()
	pool, url := testdb.Pool(t)
	ctx := context.Background()

	// Worker A: a separate process, killed with SIGKILL mid-effect.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CS_CRASH_WORKER_DB="+url)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Start runs through an insert-only process on the same database.
	starter := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: slowEffects})
	const runs = 6
	ids := make([]string, runs)
	for i := range runs {
		run, _, err := starter.Engine.Start(ctx, workflow.StartParams{Workflow: "slow_effect",
			BusinessKey: fmt.Sprintf("crash-%d", i), Input: json.RawMessage(fmt.Sprintf(`{"N":%d}`, i))})
		require.NoError(t, err)
		ids[i] = run.ID
	}
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
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("worker A never reached the effect")
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_, _ = cmd.Process.Wait()

	var running int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'running'`).Scan(&running))
	require.Positive(t, running, "the kill left jobs stuck in running")

	// Worker B rescues the stuck jobs and finishes every run.
	b := testapp.StartOn(t, pool, url, testapp.Options{Register: slowEffects, RescueAfter: 6 * time.Second})
	for _, id := range ids {
		run := b.WaitRunWithin(t, id, 90*time.Second, store.RunCompleted)
		require.Equal(t, store.RunCompleted, run.Status)
	}
	var rows, keys int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT idempotency_key) FROM demo_outbox`).Scan(&rows, &keys))
	require.Equal(t, runs, rows, "each effect happened exactly once")
	require.Equal(t, runs, keys)
	dups, err := store.OutboxDuplicates(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, dups)
}
