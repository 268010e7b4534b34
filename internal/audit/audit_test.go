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
			`UPDATE audit_events SET actor = 'mallory' WHERE id = 3`,
			`DELETE FROM audit_events WHERE id = 3`,
			`TRUNCATE audit_events`,
			`UPDATE audit_chain SET seq = 99, prev_hash = hash WHERE seq = 3`,
			`DELETE FROM audit_chain WHERE seq = 3`,
			`TRUNCATE audit_chain`,
			`TRUNCATE audit_unchained`,
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
			if _, err := tx.Exec(ctx, `UPDATE audit_events SET details = jsonb_set(details, '{verdict}', '"reject"')
				WHERE id = (SELECT event_id FROM audit_chain WHERE seq = 7)`); err != nil {
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
		DELETE FROM audit_events WHERE id = (SELECT event_id FROM audit_chain WHERE seq = 4);
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
		`UPDATE audit_events SET actor = 'mallory' WHERE id = 1`,
		`DELETE FROM audit_events WHERE id = 1`,
		`TRUNCATE audit_events`,
		`ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change`,
		`UPDATE audit_chain SET hash = prev_hash WHERE seq = 1`,
		`DELETE FROM audit_chain WHERE seq = 1`,
		`TRUNCATE audit_chain`,
		`ALTER TABLE audit_chain DISABLE TRIGGER audit_chain_no_change`,
		// Taking an unchained event out of the queue would keep it off
		// the chain for ever.
		`DELETE FROM audit_unchained`,
		`UPDATE audit_unchained SET event_id = event_id + 1000`,
		`ALTER TABLE audit_unchained DISABLE TRIGGER audit_unchained_chained`,
	} {
		err := asApp(stmt)
		require.Error(t, err, stmt)
		require.Regexp(t, "permission denied|must be owner|append-only|leaves the queue only", err.Error(), stmt)
	}
	// The application chains with its own rights: it inserts chain rows and
	// takes chained events off the queue.
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL ROLE countersign_app`); err != nil {
			return err
		}
		chained, err := audit.ChainIfFree(ctx, tx)
		require.True(t, chained)
		return err
	}))
	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK())
	require.EqualValues(t, 4, res.Events)
	require.Zero(t, res.Unchained)
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

// TestChainLeavesEventsUntouched: chaining writes only the narrow chain rows
// and empties the queue; an event row is written once, by its append
// (migration 31: an UPDATE of the event entered its seven indexes again).
func TestChainLeavesEventsUntouched(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	for i := range 5 {
		_, err := store.AuditAppend(ctx, pool, "x", "test", "x", fmt.Sprint(i), nil, map[string]int{"i": i})
		require.NoError(t, err)
	}
	versions := func() []string {
		rows, err := pool.Query(ctx, `SELECT ctid::text || '/' || xmin::text FROM audit_events ORDER BY id`)
		require.NoError(t, err)
		v, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return v
	}
	before := versions()
	var queued int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_unchained`).Scan(&queued))
	require.Equal(t, 5, queued, "every append queues its event")

	n, err := audit.Chain(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Equal(t, before, versions(), "no event row was rewritten")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_unchained`).Scan(&queued))
	require.Zero(t, queued)
	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK(), res.Problem)
	require.EqualValues(t, 5, res.Events)

	// A multi-row insert (as a bulk load would) queues every row too.
	_, err = pool.Exec(ctx, `INSERT INTO audit_events (actor, kind, subject_type, subject_id)
		SELECT 'x', 'test', 'x', g::text FROM generate_series(1, 3) g`)
	require.NoError(t, err)
	n, err = audit.Chain(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, 3, n)
}

// TestApplicationRoleCannotStallTheChain: the application role cannot put
// an event on the chainers' queue itself. A forged queue row (an event
// already chained, or one yet to be appended) would make every chaining
// pass fail on the chain's unique event id, and with it every decision,
// whose transaction chains last (approval.Decide, ChainIfFree).
func TestApplicationRoleCannotStallTheChain(t *testing.T) {
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
	for _, stmt := range []string{
		`INSERT INTO audit_unchained (event_id) SELECT event_id FROM audit_chain ORDER BY seq LIMIT 1`,
		`INSERT INTO audit_unchained (event_id) SELECT max(id) + 1 FROM audit_events`,
		`INSERT INTO audit_chain (seq, event_id, prev_hash, hash) SELECT 1000000, max(id) + 1, '\x00', '\x00' FROM audit_events`,
	} {
		err := asApp(stmt)
		require.Error(t, err, stmt)
		require.Regexp(t, "permission denied|names an event that exists", err.Error(), stmt)
	}
	require.NoError(t, asApp(`INSERT INTO audit_events (actor, kind, subject_type, subject_id) VALUES ('app', 'test', 'x', '1')`),
		"the application still appends, and its event is queued")
	n, err := audit.Chain(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK(), res.Problem)
	require.EqualValues(t, 4, res.Events)
}

// TestVerifyFindsEventsOffTheChain: an event that lost its chain row (the
// tail's, which leaves no gap) or that was inserted without the queue's
// trigger is on neither the chain nor its queue; the chain alone still
// verifies, the log does not.
func TestVerifyFindsEventsOffTheChain(t *testing.T) {
	t.Parallel()
	for name, tamper := range map[string]string{
		"TailChainRowCut": `ALTER TABLE audit_chain DISABLE TRIGGER audit_chain_no_change;
			DELETE FROM audit_chain WHERE seq = (SELECT max(seq) FROM audit_chain);
			ALTER TABLE audit_chain ENABLE TRIGGER audit_chain_no_change`,
		"InsertedUnqueued": `ALTER TABLE audit_events DISABLE TRIGGER audit_events_queue;
			INSERT INTO audit_events (actor, kind, subject_type, subject_id) VALUES ('mallory', 'test', 'x', '1');
			ALTER TABLE audit_events ENABLE TRIGGER audit_events_queue`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pool, _ := testdb.Pool(t)
			ctx := context.Background()
			appendN(t, pool, 5)
			res, err := audit.Verify(ctx, pool)
			require.NoError(t, err)
			require.True(t, res.OK())
			require.Zero(t, res.OffChain)
			_, err = pool.Exec(ctx, tamper)
			require.NoError(t, err)
			_, err = audit.Chain(ctx, pool)
			require.NoError(t, err)
			res, err = audit.Verify(ctx, pool)
			require.NoError(t, err)
			require.Zero(t, res.BrokenAt, "the chain itself verifies")
			require.EqualValues(t, 1, res.OffChain)
			require.False(t, res.OK())
		})
	}
}

// TestChainLinked: a chaining pass reports every event it linked, once,
// with the place it was given, after its commit; a pass after another
// links after its head (read with the events, in one statement).
func TestChainLinked(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	appendN(t, pool, 3) // chained already: not reported again
	for i := range 5 {
		_, err := store.AuditAppend(ctx, pool, "a@example.com", "decision.recorded", "request", fmt.Sprint(100+i), nil, map[string]any{"i": i})
		require.NoError(t, err)
	}
	seqs := map[int64]int64{}
	n, err := audit.ChainLinked(ctx, pool, func(e *store.AuditEvent) {
		_, seen := seqs[e.ID]
		require.False(t, seen, "reported once")
		seqs[e.ID] = e.Seq
	})
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Len(t, seqs, 5)
	for id, seq := range seqs {
		var stored int64
		require.NoError(t, pool.QueryRow(ctx, `SELECT seq FROM audit_chain WHERE event_id = $1`, id).Scan(&stored))
		require.Equal(t, stored, seq)
		require.Greater(t, seq, int64(3))
	}
	n, err = audit.ChainLinked(ctx, pool, func(*store.AuditEvent) { t.Error("nothing left to link") })
	require.NoError(t, err)
	require.Zero(t, n)
	res, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.True(t, res.OK(), "the second pass linked after the first's head: %s", res.Problem)
	require.EqualValues(t, 8, res.Events)
}
