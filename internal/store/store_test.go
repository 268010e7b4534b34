package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/vocab"
)

// TestErrorClasses checks that each class of PostgreSQL error becomes one
// sentinel at the store's edge, on queries and on Exec alike, and that a
// refused value is never read as "not found" or "already exists".
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	const none = "00000000-0000-0000-0000-000000000000"

	t.Run("NoRowIsNotFound", func(t *testing.T) {
		_, err := store.RunGet(ctx, pool, none)
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("MalformedUUIDIsInvalidInput", func(t *testing.T) {
		_, err := store.RunGet(ctx, pool, "nope")
		require.ErrorIs(t, err, store.ErrInvalidInput, "22P02 on a query")
		require.NotErrorIs(t, err, store.ErrNotFound)
		require.ErrorContains(t, err, "uuid")
		err = store.RequestLeaveOut(ctx, pool, "nope", "note")
		require.ErrorIs(t, err, store.ErrInvalidInput, "22P02 on Exec")
		_, err = store.RequestListByRun(ctx, pool, "nope")
		require.ErrorIs(t, err, store.ErrInvalidInput, "22P02 on a listing")
	})

	t.Run("UnstorableJSONIsInvalidInputNotExisting", func(t *testing.T) {
		// Valid JSON that jsonb refuses: a lone surrogate.
		for _, input := range []string{`{"subject":"\ud800"}`, `{"n":1e999999}`} {
			run, created, err := store.RunInsert(ctx, pool, store.RunInsertParams{Workflow: "w", BusinessKey: "k",
				Input: json.RawMessage(input), StartedBy: "t"})
			require.ErrorIs(t, err, store.ErrInvalidInput, input)
			require.False(t, created)
			require.Nil(t, run)
			require.ErrorContains(t, err, "insert run")
		}
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM workflow_runs`).Scan(&n))
		require.Zero(t, n)
	})

	t.Run("UntranslatableCharacterIsInvalidInput", func(t *testing.T) {
		// 22P05: jsonb cannot hold U+0000.
		_, err := store.AuditAppend(ctx, pool, "t", "test.event", "run", none, nil, map[string]any{"note": "a\x00b"})
		require.ErrorIs(t, err, store.ErrInvalidInput)
	})

	t.Run("UniqueViolationIsConflict", func(t *testing.T) {
		p := store.RunInsertParams{Workflow: "w", BusinessKey: "dup", Input: json.RawMessage(`{}`), StartedBy: "t"}
		_, created, err := store.RunInsert(ctx, pool, p)
		require.NoError(t, err)
		require.True(t, created)
		_, created, err = store.RunInsert(ctx, pool, p)
		require.NoError(t, err, "the same key is the same run")
		require.False(t, created)
		_, err = store.UserInsert(ctx, pool, "ann@example.com", "Ann", "reviewer", "x")
		require.NoError(t, err)
		_, err = store.UserInsert(ctx, pool, "ann@example.com", "Ann", "reviewer", "x")
		require.ErrorIs(t, err, store.ErrConflict)
	})

	t.Run("ForeignKeyViolationIsNotFound", func(t *testing.T) {
		_, err := store.BatchDecisionInsert(ctx, pool, none, "t", "reject_all", "r")
		require.ErrorIs(t, err, store.ErrNotFound, "the batch referred to does not exist")
	})

	t.Run("InATransaction", func(t *testing.T) {
		// The refusal is reported as input, and the transaction is not
		// committed half done.
		err := store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
			if _, _, err := store.RunInsert(ctx, tx, store.RunInsertParams{Workflow: "w", BusinessKey: "tx",
				Input: json.RawMessage(`{}`), StartedBy: "t"}); err != nil {
				return err
			}
			_, err := store.RunGet(ctx, tx, "nope")
			return err
		})
		require.ErrorIs(t, err, store.ErrInvalidInput)
		_, err = store.RunList(ctx, pool, store.RunListParams{Limit: 10})
		require.NoError(t, err)
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM workflow_runs WHERE business_key = 'tx'`).Scan(&n))
		require.Zero(t, n)
	})
}

// TestRunInsertClaimed: a run born claimed is running, attempt 1, leased to
// its owner, and committed with its start's audit event by the one
// statement sent on the pool; the same business key returns the existing
// run untouched and writes no second event; and in a transaction it
// commits (or rolls back) with it.
func TestRunInsertClaimed(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	owner := uuid.NewString()
	p := store.RunInsertParams{Workflow: "w", BusinessKey: "born-claimed", Input: []byte(`{}`), StartedBy: "agent@example.com"}
	ev := store.StartEvent{Kind: "run.started", SubjectType: "run", Details: map[string]any{"workflow": "w", "business_key": "born-claimed"}}
	events := func(runID string) (n int, actor, details string) {
		t.Helper()
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), coalesce(min(actor), ''), coalesce(min(details::text), '') FROM audit_events
			WHERE run_id = $1 AND kind = 'run.started' AND subject_type = 'run' AND subject_id = $1::text`, runID).Scan(&n, &actor, &details))
		return n, actor, details
	}
	run, created, err := store.RunInsertClaimed(ctx, pool, p, owner, time.Minute, ev)
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, vocab.RunRunning, run.Status)
	require.Equal(t, 1, run.Attempt)
	got, err := store.RunGet(ctx, pool, run.ID)
	require.NoError(t, err, "committed")
	require.Equal(t, vocab.RunRunning, got.Status)
	require.NotNil(t, got.LeaseOwner)
	require.Equal(t, owner, *got.LeaseOwner)
	var leased time.Duration
	require.NoError(t, pool.QueryRow(ctx, `SELECT (extract(epoch FROM lease_until - now()) * 1e9)::bigint FROM workflow_runs WHERE id = $1`,
		run.ID).Scan(&leased))
	require.InDelta(t, time.Minute, leased, float64(30*time.Second), "leased for the time given")
	n, actor, details := events(run.ID)
	require.Equal(t, 1, n, "the run.started event committed with the run")
	require.Equal(t, p.StartedBy, actor)
	require.JSONEq(t, `{"workflow": "w", "business_key": "born-claimed"}`, details)

	again, created, err := store.RunInsertClaimed(ctx, pool, p, uuid.NewString(), time.Minute, ev)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, run.ID, again.ID)
	require.Equal(t, owner, *again.LeaseOwner, "the existing run's claim is not taken over")
	n, _, _ = events(run.ID)
	require.Equal(t, 1, n, "no second event for the existing run")

	t.Run("RolledBack", func(t *testing.T) {
		p := p
		p.BusinessKey = "rolled-back"
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		run, created, err := store.RunInsertClaimed(ctx, tx, p, owner, time.Minute, ev)
		require.NoError(t, err)
		require.True(t, created)
		require.NoError(t, tx.Rollback(ctx))
		_, err = store.RunGet(ctx, pool, run.ID)
		require.ErrorIs(t, err, store.ErrNotFound)
		n, _, _ := events(run.ID)
		require.Zero(t, n)
	})
}
