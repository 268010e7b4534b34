package jobs_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/jobs"
	"github.com/countersign/countersign/vocab"
)

// testTx is a transaction for rivertest to insert and finish the job in,
// rolled back at the end. The workers write through their own pool.
func testTx(t *testing.T, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	tx, err := pool.Begin(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

func TestBatchCloseWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	closesAt := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)

	// setup opens a batch with one item that closes at closesAt, and a
	// worker whose clock reads now.
	setup := func(t *testing.T, now time.Time) (string, *rivertest.Worker[jobs.BatchCloseArgs, pgx.Tx]) {
		t.Helper()
		req := factory.Request(ctx, t, pool, &factory.RequestOpts{Tier: factory.Ptr(vocab.TierBatched)})
		id, opened, _, err := store.BatchJoin(ctx, pool, req.ID, "group-"+req.ID, "rule", req.Workflow, req.ActionKind, 10, closesAt)
		require.NoError(t, err)
		require.True(t, opened)
		// Closing schedules nothing, so the engine needs no scheduler here.
		engine := workflow.New(workflow.Config{Pool: pool, Registry: workflow.NewRegistry(), Now: func() time.Time { return now }})
		w := &jobs.BatchCloseWorker{Engine: engine}
		return id, rivertest.NewWorker(t, riverpgxv5.New(pool), &river.Config{}, w)
	}

	t.Run("BeforeItsTimeSnoozes", func(t *testing.T) {
		t.Parallel()
		id, w := setup(t, closesAt.Add(-time.Minute))
		res, err := w.Work(ctx, t, testTx(t, pool), jobs.BatchCloseArgs{BatchID: id}, nil)
		require.NoError(t, err)
		require.Equal(t, river.EventKindJobSnoozed, res.EventKind)
		b, err := store.BatchGet(ctx, pool, id)
		require.NoError(t, err)
		require.Equal(t, vocab.BatchOpen, b.Status)
	})

	t.Run("OnTimeCloses", func(t *testing.T) {
		t.Parallel()
		id, w := setup(t, closesAt)
		res, err := w.Work(ctx, t, testTx(t, pool), jobs.BatchCloseArgs{BatchID: id}, nil)
		require.NoError(t, err)
		require.Equal(t, river.EventKindJobCompleted, res.EventKind)
		b, err := store.BatchGet(ctx, pool, id)
		require.NoError(t, err)
		require.Equal(t, vocab.BatchReady, b.Status)

		// Again, as a rescued job would: nothing more to do.
		res, err = w.Work(ctx, t, testTx(t, pool), jobs.BatchCloseArgs{BatchID: id}, nil)
		require.NoError(t, err)
		require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	})

	t.Run("MissingBatchFails", func(t *testing.T) {
		t.Parallel()
		_, w := setup(t, closesAt)
		res, err := w.Work(ctx, t, testTx(t, pool), jobs.BatchCloseArgs{BatchID: "00000000-0000-0000-0000-000000000000"}, nil)
		require.ErrorIs(t, err, store.ErrNotFound)
		require.Equal(t, river.EventKindJobFailed, res.EventKind)
	})
}

func TestDeadlineWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testapp.Start(t, testapp.Options{NoWorker: true})
	w := rivertest.NewWorker(t, riverpgxv5.New(b.Pool), &river.Config{}, &jobs.DeadlineWorker{Engine: b.Engine})
	request := func(t *testing.T, deadline time.Time, onTimeout string) *store.Request {
		t.Helper()
		return factory.Request(ctx, t, b.Pool, &factory.RequestOpts{Deadline: &deadline, OnTimeout: &onTimeout,
			Rule: factory.Ptr("slow")})
	}
	work := func(t *testing.T, id string) *rivertest.WorkResult {
		t.Helper()
		res, err := w.Work(ctx, t, testTx(t, b.Pool), jobs.DeadlineArgs{RequestID: id}, nil)
		require.NoError(t, err)
		return res
	}
	get := func(t *testing.T, id string) *store.Request {
		t.Helper()
		r, err := store.RequestGet(ctx, b.Pool, id)
		require.NoError(t, err)
		return r
	}

	t.Run("BeforeTheDeadlineSnoozes", func(t *testing.T) {
		t.Parallel()
		req := request(t, time.Now().Add(time.Hour), "reject")
		require.Equal(t, river.EventKindJobSnoozed, work(t, req.ID).EventKind)
		require.Equal(t, vocab.RequestPending, get(t, req.ID).Status)
	})

	t.Run("Reject", func(t *testing.T) {
		t.Parallel()
		req := request(t, time.Now().Add(-time.Minute), "reject")
		require.Equal(t, river.EventKindJobCompleted, work(t, req.ID).EventKind)
		after := get(t, req.ID)
		require.Equal(t, vocab.RequestRejected, after.Status)
		require.Equal(t, "policy:slow", *after.DecidedBy)
	})

	t.Run("Escalate", func(t *testing.T) {
		t.Parallel()
		req := request(t, time.Now().Add(-time.Minute), "escalate")
		require.Equal(t, river.EventKindJobCompleted, work(t, req.ID).EventKind)
		after := get(t, req.ID)
		require.Equal(t, vocab.RequestPending, after.Status, "an escalated request waits for someone else")
		require.NotNil(t, after.EscalatedAt)
		require.Contains(t, after.Note, "Escalated")
	})

	t.Run("DecidedOrMissingIsANoOp", func(t *testing.T) {
		t.Parallel()
		decided := factory.Request(ctx, t, b.Pool, &factory.RequestOpts{Status: factory.Ptr(vocab.RequestApproved),
			Deadline: factory.Ptr(time.Now().Add(-time.Minute)), OnTimeout: factory.Ptr("reject")})
		require.Equal(t, river.EventKindJobCompleted, work(t, decided.ID).EventKind)
		require.Equal(t, vocab.RequestApproved, get(t, decided.ID).Status)
		require.Equal(t, river.EventKindJobCompleted, work(t, "00000000-0000-0000-0000-000000000000").EventKind)
	})
}

// Jobs the scheduler inserts get the same attempts as the working client's
// (RunMaxAttempts), not River's default of 25: a deadline that keeps failing
// is given up after days of backoff otherwise.
func TestSchedulerJobsHaveTheRunsAttempts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	s, err := jobs.NewScheduler(pool, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	tx := testTx(t, pool)
	at := time.Now().Add(time.Hour)
	require.NoError(t, s.ScheduleDeadline(ctx, tx, uuid.NewString(), at))
	require.NoError(t, s.ScheduleBatchClose(ctx, tx, uuid.NewString(), at))
	rows, err := tx.Query(ctx, `SELECT kind, max_attempts FROM river_job ORDER BY kind`)
	require.NoError(t, err)
	got := map[string]int{}
	for rows.Next() {
		var kind string
		var n int
		require.NoError(t, rows.Scan(&kind, &n))
		got[kind] = n
	}
	require.NoError(t, rows.Err())
	require.Equal(t, map[string]int{"batch_close": jobs.RunMaxAttempts, "request_deadline": jobs.RunMaxAttempts}, got)
}
