package audit_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
)

func appendN(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	defer func() {
		_, err := audit.Chain(ctx, pool)
		require.NoError(t, err)
	}()
	for i := range n {
		runID := "0b9e7b4e-4a59-4f5c-9d55-4d7a8f1c2b3a"
		var run *string
		if i%2 == 0 {
			run = &runID
		}
		_, err := store.AuditAppend(ctx, pool, fmt.Sprintf("user%d@example.com", i%3), "decision.recorded", "request",
			fmt.Sprint(i), run, map[string]any{"verdict": "approve", "note": "émoji ✓ and \"quotes\"", "n": i})
		require.NoError(t, err)
	}
}

func TestChain(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()

	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK())
	require.Zero(t, res.Events, "an empty log verifies")

	appendN(t, pool, 20)
	res, err = audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK(), res.Problem)
	require.EqualValues(t, 20, res.Events)
	_, head, err := store.AuditHead(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, head, res.Head)

	t.Run("ChangesAreRefused", func(t *testing.T) {
		for _, stmt := range []string{
			`UPDATE audit_events SET actor = 'mallory' WHERE seq = 3`,
			`UPDATE audit_events SET seq = 99, prev_hash = hash WHERE seq = 3`,
			`DELETE FROM audit_events WHERE seq = 3`,
			`TRUNCATE audit_events`,
		} {
			_, err := pool.Exec(ctx, stmt)
			require.ErrorContains(t, err, "append-only", stmt)
		}
	})

	t.Run("VerifyNamesTheEditedRow", func(t *testing.T) {
		// A superuser who disables the trigger can edit a row; verify finds it.
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change`); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE audit_events SET details = jsonb_set(details, '{verdict}', '"reject"') WHERE seq = 7`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change`)
			return err
		})
		require.NoError(t, err)
		res, err := audit.Verify(ctx, pool)
		require.NoError(t, err)
		require.False(t, res.OK())
		require.EqualValues(t, 7, res.BrokenAt)
		require.Contains(t, res.Problem, "hash does not match")
		require.EqualValues(t, 6, res.Events)
	})
}

func TestVerifyFindsDeletedRow(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	appendN(t, pool, 10)
	_, err := pool.Exec(ctx, `ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change;
		DELETE FROM audit_events WHERE seq = 4;
		ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change`)
	require.NoError(t, err)
	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.EqualValues(t, 4, res.BrokenAt)
	require.Contains(t, res.Problem, "missing")
}

func TestConcurrentAppendsKeepOneChain(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	// Two chainers run throughout, as two worker processes would.
	chainCtx, stopChainers := context.WithCancel(ctx)
	var chainers sync.WaitGroup
	for range 2 {
		chainers.Add(1)
		go func() { defer chainers.Done(); audit.RunChainer(chainCtx, pool, 5*time.Millisecond, slog.Default()) }()
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				// Each append sits in a transaction with other work, as in production.
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					if _, err := store.AuditAppend(ctx, tx, fmt.Sprintf("w%d", w), "test", "x", fmt.Sprint(i), nil, map[string]int{"i": i}); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, `SELECT pg_sleep(0.001)`)
					return err
				})
				require.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	stopChainers()
	chainers.Wait()
	_, err := audit.Chain(ctx, pool)
	require.NoError(t, err)
	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK(), res.Problem)
	require.EqualValues(t, 400, res.Events)
	require.Zero(t, res.Unchained)
}

func TestUnchainedEventsAreCounted(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	appendN(t, pool, 3)
	_, err := store.AuditAppend(ctx, pool, "x", "test", "x", "1", nil, nil)
	require.NoError(t, err)
	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK())
	require.EqualValues(t, 3, res.Events)
	require.EqualValues(t, 1, res.Unchained)
}

func TestRolledBackAppendLeavesNoGap(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	appendN(t, pool, 2)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = store.AuditAppend(ctx, tx, "x", "test", "x", "1", nil, nil)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	appendN(t, pool, 2)
	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK(), res.Problem)
	require.EqualValues(t, 4, res.Events)
}

func TestApplicationRoleCannotChangeThePast(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	appendN(t, pool, 3)
	asApp := func(stmt string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL ROLE countersign_app`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, stmt)
			return err
		})
	}
	require.NoError(t, asApp(`INSERT INTO audit_events (actor, kind, subject_type, subject_id) VALUES ('app', 'test', 'x', '1')`),
		"the application appends")
	for _, stmt := range []string{
		`UPDATE audit_events SET actor = 'mallory' WHERE seq = 1`,
		`DELETE FROM audit_events WHERE seq = 1`,
		`TRUNCATE audit_events`,
		`ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change`,
	} {
		err := asApp(stmt)
		require.Error(t, err, stmt)
		require.Regexp(t, "permission denied|must be owner|append-only", err.Error(), stmt)
	}
	_, err := audit.Chain(ctx, pool)
	require.NoError(t, err)
	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK())
	require.EqualValues(t, 4, res.Events)
}

// TestChainIfFree: a transaction chains its own event when no chainer
// holds the chain, and leaves it to the next pass, without waiting, when
// one does; a rollback takes its links with it.
func TestChainIfFree(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	appendN(t, pool, 2)
	// An event of another transaction, committed unchained.
	_, err := store.AuditAppend(ctx, pool, "x", "test", "x", "0", nil, nil)
	require.NoError(t, err)

	appendChained := func(subject string) bool {
		t.Helper()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		_, err = store.AuditAppend(ctx, tx, "x", "test", "x", subject, nil, nil)
		require.NoError(t, err)
		chained, err := audit.ChainIfFree(ctx, tx)
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
		return chained
	}

	t.Run("Free", func(t *testing.T) {
		require.True(t, appendChained("1"))
		res, err := audit.Verify(ctx, pool)
		require.NoError(t, err)
		require.True(t, res.OK(), res.Problem)
		require.EqualValues(t, 4, res.Events, "its own event and the one committed before it")
		require.Zero(t, res.Unchained)
	})

	t.Run("Held", func(t *testing.T) {
		holder, err := pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, store.AuditChainLock(ctx, holder))
		began := time.Now()
		require.False(t, appendChained("2"), "another chainer holds the chain")
		require.Less(t, time.Since(began), 5*time.Second, "it did not wait for the holder")
		require.NoError(t, holder.Rollback(ctx))
		res, err := audit.Verify(ctx, pool)
		require.NoError(t, err)
		require.EqualValues(t, 1, res.Unchained, "left to the next pass")
		_, err = audit.Chain(ctx, pool)
		require.NoError(t, err)
		res, err = audit.Verify(ctx, pool)
		require.NoError(t, err)
		require.True(t, res.OK(), res.Problem)
		require.EqualValues(t, 5, res.Events)
	})

	t.Run("RolledBack", func(t *testing.T) {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		_, err = store.AuditAppend(ctx, tx, "x", "test", "x", "3", nil, nil)
		require.NoError(t, err)
		chained, err := audit.ChainIfFree(ctx, tx)
		require.NoError(t, err)
		require.True(t, chained)
		require.NoError(t, tx.Rollback(ctx))
		require.True(t, appendChained("4"))
		res, err := audit.Verify(ctx, pool)
		require.NoError(t, err)
		require.True(t, res.OK(), res.Problem)
		require.EqualValues(t, 6, res.Events, "no gap where the rolled-back link was")
	})
}
