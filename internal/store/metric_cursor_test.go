package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
)

// between runs a function before the second statement sent through it:
// what another process may commit between a function's two reads.
type between struct {
	store.DBTX
	calls int
	fn    func()
}

func (b *between) next() {
	if b.calls++; b.calls == 2 {
		b.fn()
	}
}

func (b *between) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	b.next()
	return b.DBTX.Exec(ctx, sql, args...)
}

func (b *between) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	b.next()
	return b.DBTX.Query(ctx, sql, args...)
}

func (b *between) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	b.next()
	return b.DBTX.QueryRow(ctx, sql, args...)
}

// TestMetricAuditAfterChainedBetween: a chaining pass that commits between
// MetricAuditAfter's two reads must not move the cursor past an event the
// call did not return (the metrics would never count it).
func TestMetricAuditAfterChainedBetween(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.run(t, "w")
	appendChained := func() {
		t.Helper()
		_, err := audit.Append(b.ctx, b.pool, audit.Event{Actor: "test", Subject: audit.RunSubject(r.ID), RunID: r.ID,
			Details: audit.RunStarted{Workflow: "w", BusinessKey: "k"}})
		require.NoError(t, err)
		_, err = audit.Chain(b.ctx, b.pool)
		require.NoError(t, err)
	}
	appendChained()
	kinds := []string{string(audit.KindRunStarted)}
	var after int64
	seen := 0
	for range 3 {
		db := &between{DBTX: b.pool, fn: appendChained}
		events, last, err := store.MetricAuditAfter(b.ctx, db, after, 100, kinds)
		require.NoError(t, err)
		var chained int64
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT count(*) FROM audit_chain c JOIN audit_events e ON e.id = c.event_id
			WHERE c.seq > $1 AND c.seq <= $2 AND e.kind = $3`, after, last, kinds[0]).Scan(&chained))
		require.Len(t, events, int(chained), "every event up to the new cursor is returned")
		seen += len(events)
		after = last
	}
	events, last, err := store.MetricAuditAfter(b.ctx, b.pool, after, 100, kinds)
	require.NoError(t, err)
	seen += len(events)
	require.Equal(t, 4, seen, "each event once: the first and the three chained between reads")
	require.Greater(t, last, int64(0))
}
