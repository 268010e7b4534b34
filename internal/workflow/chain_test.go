package workflow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// chainedRuns counts the runs under way that an execution holds and that
// have no River job: runs a worker took after its own (ExecuteNext).
const chainedRuns = `SELECT count(*) FROM workflow_runs r
	WHERE r.status = 'running' AND r.lease_owner IS NOT NULL AND NOT EXISTS (SELECT 1 FROM river_job j
		WHERE j.kind = 'workflow_run' AND j.args @> jsonb_build_object('run_id', r.id::text))`

// TestChainedRuns queues three times as many runs as the process has
// workers (ten): the workers' jobs go on with the runs whose jobs River has
// not fetched, deleting those jobs, and every run completes with each of
// its steps recorded once.
func TestChainedRuns(t *testing.T) {
	t.Parallel()
	pool, url := testdb.Pool(t)
	ctx := context.Background()
	three := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "three", func(ctx context.Context, in struct{ N int }) (int, error) {
			a, err := workflow.Step(ctx, "a", func(context.Context) (int, error) { return in.N, nil })
			if err != nil {
				return 0, err
			}
			b, err := workflow.Effect(ctx, "b", func(context.Context, workflow.EffectContext) (int, error) { return a + 1, nil })
			if err != nil {
				return 0, err
			}
			return workflow.Step(ctx, "c", func(context.Context) (int, error) { return b * 2, nil })
		})
	}
	starter := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: three})
	const runs = 30
	ids := make([]string, runs)
	for i := range runs {
		run, _, err := starter.Engine.Start(ctx, workflow.StartParams{Workflow: "three", BusinessKey: fmt.Sprint("chain-", i),
			Input: json.RawMessage(fmt.Sprintf(`{"N":%d}`, i))})
		require.NoError(t, err)
		ids[i] = run.ID
	}
	var jobs int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'workflow_run'`).Scan(&jobs))
	require.Equal(t, runs, jobs, "one job per started run")

	w := testapp.StartOn(t, pool, url, testapp.Options{Register: three})
	for i, id := range ids {
		run := w.WaitRun(t, id, vocab.RunCompleted)
		require.JSONEq(t, fmt.Sprint((i+1)*2), string(run.Output))
		steps, err := store.StepList(ctx, pool, id)
		require.NoError(t, err)
		require.Len(t, steps, 3)
		for _, s := range steps {
			require.Equal(t, 1, s.Attempts, "run %s step %s", id, s.Name)
		}
	}
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'workflow_run'`).Scan(&jobs))
	require.Less(t, jobs, runs, "some runs went on without their own job")
	t.Logf("%d runs, %d River jobs executed", runs, jobs)
	var effects int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM side_effects`).Scan(&effects))
	require.Equal(t, runs, effects, "each effect once")
}

// TestCrashChainedRun kills a worker (SIGKILL) while it executes runs it
// took after its own, whose jobs it deleted: those runs have no job, and a
// second worker with default settings finishes each of them once its lease
// lapses (the sweeper), every effect exactly once.
func TestCrashChainedRun(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test waits for a lapsed lease")
	}
	t.Parallel()
	pool, url := testdb.Pool(t)
	ctx := context.Background()
	starter := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: slowEffects})
	// Ten workers take ten runs; the other five are chained after them.
	const runs = 15
	ids := startSlowEffects(t, starter.Engine, "chained", runs)

	a, _ := crashWorker(t, url)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		require.NoError(t, pool.QueryRow(ctx, chainedRuns).Scan(&n))
		if n > 0 {
			break
		}
		require.True(t, time.Now().Before(deadline), "worker A never chained a run")
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // into the chained runs' slow effects
	kill(t, a)
	killed := time.Now()
	var orphans int
	require.NoError(t, pool.QueryRow(ctx, chainedRuns).Scan(&orphans))
	require.Positive(t, orphans, "the kill left chained runs without a job")

	b := testapp.StartOn(t, pool, url, testapp.Options{Register: slowEffects})
	for _, id := range ids {
		run := b.WaitRunWithin(t, id, 30*time.Second-time.Since(killed), vocab.RunCompleted)
		require.Zero(t, run.Failures, "a crash spends no error attempt")
	}
	t.Logf("SIGKILL -> last run completed: %s", time.Since(killed).Round(time.Millisecond))
	var rows, keys int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT idempotency_key) FROM demo_outbox`).Scan(&rows, &keys))
	require.Equal(t, runs, rows, "each effect happened exactly once")
	require.Equal(t, runs, keys)
	var recovered int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE kind = 'run.recovered'`).Scan(&recovered))
	require.GreaterOrEqual(t, recovered, orphans, "each chained run was handed to a new job")
}

// TestChainedRunStopRequeues: a worker that stops while it executes a run
// it took after its own (ExecuteNext, whose job it deleted) puts a job back
// for the run, as River puts a job back, instead of leaving the run to the
// sweeper after its lease, which would count a recovery for every stop.
func TestChainedRunStopRequeues(t *testing.T) {
	t.Parallel()
	pool, url := testdb.Pool(t)
	started := make(chan struct{}, 1)
	blocker := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "blocker", func(ctx context.Context, _ struct{}) (int, error) {
			return workflow.Step(ctx, "wait", func(ctx context.Context) (int, error) {
				started <- struct{}{}
				<-ctx.Done()
				return 0, ctx.Err()
			})
		})
	}
	a := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: blocker})
	run, _, err := a.Engine.Start(t.Context(), workflow.StartParams{Workflow: "blocker", BusinessKey: "stop", Input: json.RawMessage(`{}`)})
	require.NoError(t, err)

	ctx, stop := context.WithCancel(t.Context())
	done := make(chan bool, 1)
	go func() {
		ok, _ := a.Engine.ExecuteNext(ctx, &workflow.Handoff{Queue: "default", Kind: "workflow_run"})
		done <- ok
	}()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the chained run never started")
	}
	stop() // the worker stops
	select {
	case ok := <-done:
		require.True(t, ok, "it took the run")
	case <-time.After(20 * time.Second):
		t.Fatal("the chained run did not stop")
	}
	got, err := store.RunGet(t.Context(), pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunRunning, got.Status)
	require.Nil(t, got.LeaseOwner, "the lease is given up")
	var jobs int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM river_job WHERE kind = 'workflow_run' AND state = 'available'
		AND args @> jsonb_build_object('run_id', $1::text, 'seq', $2::int)`, run.ID, got.ResumeSeq).Scan(&jobs))
	require.Equal(t, 1, jobs, "a job is put back for the run")
	require.Zero(t, got.Failures, "a stop spends no attempt")
}

// TestHandoff: a run that completes while its job goes on claims the next
// ready run in the statement that completes it (its job deleted), which the
// next ExecuteNext executes without a claim of its own; one claimed and not
// executed is handed back with a job of its own and no recovery counted.
func TestHandoff(t *testing.T) {
	t.Parallel()
	pool, url := testdb.Pool(t)
	ctx := t.Context()
	one := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "one", func(ctx context.Context, in struct{ N int }) (int, error) {
			return workflow.Step(ctx, "a", func(context.Context) (int, error) { return in.N, nil })
		})
	}
	a := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: one})
	var runs []*store.Run
	for i := range 3 {
		run, _, err := a.Engine.Start(ctx, workflow.StartParams{Workflow: "one", BusinessKey: fmt.Sprint("h-", i),
			Input: json.RawMessage(fmt.Sprintf(`{"N":%d}`, i))})
		require.NoError(t, err)
		runs = append(runs, run)
	}
	jobOf := func(run *store.Run) (state string) {
		err := pool.QueryRow(ctx, `SELECT coalesce((SELECT state::text FROM river_job WHERE kind = 'workflow_run'
			AND args->>'run_id' = $1), 'none')`, run.ID).Scan(&state)
		require.NoError(t, err)
		return state
	}
	// The first run's job, as River hands it to a worker: fetched.
	_, err := pool.Exec(ctx, `UPDATE river_job SET state = 'running', attempted_at = now() WHERE args->>'run_id' = $1`, runs[0].ID)
	require.NoError(t, err)

	h := &workflow.Handoff{Queue: "default", Kind: "workflow_run", Until: time.Now().Add(time.Minute)}
	require.NoError(t, a.Engine.Execute(ctx, workflow.Job{RunID: runs[0].ID, Attempt: 1, MaxAttempts: 5, Next: h}, nil))
	require.True(t, h.Pending(), "the completion claimed the next run")
	got, err := store.RunGet(ctx, pool, runs[0].ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunCompleted, got.Status)
	require.JSONEq(t, `0`, string(got.Output))
	got, err = store.RunGet(ctx, pool, runs[1].ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunRunning, got.Status, "claimed with the first one's completion")
	require.NotNil(t, got.LeaseOwner)
	require.Equal(t, "none", jobOf(runs[1]), "its job is gone")

	h.Until = time.Now().Add(-time.Second) // the chain's time is up: no more claims
	ok, err := a.Engine.ExecuteNext(ctx, h)
	require.NoError(t, err)
	require.True(t, ok)
	require.False(t, h.Pending(), "no claim once the chain's time is up")
	got, err = store.RunGet(ctx, pool, runs[1].ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunCompleted, got.Status)
	require.JSONEq(t, `1`, string(got.Output))
	require.Equal(t, "available", jobOf(runs[2]), "the third waits for its own job")

	// A run claimed and not executed is handed back.
	h.Until = time.Now().Add(time.Minute)
	fourth, _, err := a.Engine.Start(ctx, workflow.StartParams{Workflow: "one", BusinessKey: "h-3", Input: json.RawMessage(`{"N":3}`)})
	require.NoError(t, err)
	ok, err = a.Engine.ExecuteNext(ctx, h) // the third, claimed by itself; its completion claims the fourth
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, h.Pending())
	require.NoError(t, a.Engine.ReleaseHandoff(ctx, h))
	require.False(t, h.Pending())
	got, err = store.RunGet(ctx, pool, fourth.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunRunning, got.Status)
	require.Nil(t, got.LeaseOwner, "the claim is given up")
	require.Equal(t, "available", jobOf(fourth), "a job is queued for it")
	require.Zero(t, got.Recoveries)
	require.NoError(t, a.Engine.Execute(ctx, workflow.Job{RunID: fourth.ID, Seq: got.ResumeSeq, Attempt: 1, MaxAttempts: 5}, nil))
	got, err = store.RunGet(ctx, pool, fourth.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunCompleted, got.Status, "its job executes it")
}
