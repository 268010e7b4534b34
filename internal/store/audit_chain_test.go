package store_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
)

// TestAuditChainedStreams checks the plan of the query a verification of the
// whole chain runs (sql/AuditChained.sql): the chain read in order on its
// key, each event fetched by its own, no sort and no hash of the whole chain,
// so that the first rows come at once and memory stays constant at any length.
func TestAuditChainedStreams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.pool.Exec(b.ctx, `INSERT INTO audit_events (actor, kind, subject_type, subject_id)
		SELECT 'x', 'test', 'x', g::text FROM generate_series(1, 20000) g`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `WITH c AS (
			INSERT INTO audit_chain (seq, event_id, prev_hash, hash)
			SELECT row_number() OVER (ORDER BY event_id), event_id, sha256(int8send(event_id - 1)), sha256(int8send(event_id))
			FROM audit_unchained RETURNING event_id)
		DELETE FROM audit_unchained u USING c WHERE u.event_id = c.event_id`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `ANALYZE audit_events, audit_chain`)
	require.NoError(t, err)

	var scans []scan
	require.NoError(t, pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		e := &explainer{t: t, tx: tx}
		err := store.AuditScan(b.ctx, e, 1, func(*store.AuditEvent) error { return nil })
		scans = e.scans
		return err
	}))
	require.ElementsMatch(t, []scan{
		{Node: "Index Scan", Relation: "audit_chain", Index: "audit_chain_pkey"},
		{Node: "Index Scan", Relation: "audit_events", Index: "audit_events_pkey"},
	}, scans)

	// An export of every event (AuditStream, sql/AuditList.sql) looks each
	// event's chain row up by its key too, rather than sorting the chain.
	require.NoError(t, pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		e := &explainer{t: t, tx: tx}
		err := store.AuditStream(b.ctx, e, store.AuditFilter{}, 0, 0, func(*store.AuditEvent) error { return nil })
		scans = e.scans
		return err
	}))
	require.Contains(t, scans, scan{Node: "Index Scan", Relation: "audit_chain", Index: "audit_chain_event_id_key"})
	require.NotContains(t, scans, scan{Node: "Seq Scan", Relation: "audit_chain"})

	// And it reads what was chained, in order.
	var seqs []int64
	require.NoError(t, store.AuditScan(b.ctx, b.pool, 19999, func(e *store.AuditEvent) error {
		seqs = append(seqs, e.Seq)
		require.Len(t, e.Hash, 32)
		return nil
	}))
	require.Equal(t, []int64{19999, 20000}, seqs)
	n, err := store.AuditUnchainedCount(b.ctx, b.pool)
	require.NoError(t, err)
	require.Zero(t, n)
}
