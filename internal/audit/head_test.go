package audit_test

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
)

// savedHead appends n events and returns the head as `audit head` saves it.
func savedHead(t *testing.T, pool *pgxpool.Pool, n int) audit.Head {
	t.Helper()
	appendN(t, pool, n)
	seq, hash, err := store.AuditHead(context.Background(), pool)
	require.NoError(t, err)
	return audit.Head{Seq: seq, Hash: hex.EncodeToString(hash)}
}

// tamper runs sql as a superuser who disabled the append-only triggers.
func tamper(t *testing.T, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change;
			ALTER TABLE audit_chain DISABLE TRIGGER audit_chain_no_change`); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change;
			ALTER TABLE audit_chain ENABLE TRIGGER audit_chain_no_change`)
		return err
	}))
}

func verifyHead(t *testing.T, pool *pgxpool.Pool, h audit.Head) audit.Result {
	t.Helper()
	res, err := audit.VerifyHead(context.Background(), pool, &h)
	require.NoError(t, err)
	require.Zero(t, res.BrokenAt, "the chain verifies on its own: %s", res.Problem)
	return res
}

func TestVerifyHead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("HeldWhileTheChainGrows", func(t *testing.T) {
		t.Parallel()
		pool, _ := testdb.Pool(t)
		h := savedHead(t, pool, 10)
		appendN(t, pool, 5)
		res := verifyHead(t, pool, h)
		require.True(t, res.OK(), res.HeadProblem)
		require.EqualValues(t, 15, res.Events)
		require.True(t, verifyHead(t, pool, audit.Head{Hash: h.Hash}).OK(), "found by its hash alone")
	})

	t.Run("Truncated", func(t *testing.T) {
		t.Parallel()
		pool, _ := testdb.Pool(t)
		h := savedHead(t, pool, 10)
		tamper(t, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM audit_events WHERE id IN (SELECT event_id FROM audit_chain WHERE seq > 8)`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM audit_chain WHERE seq > 8`)
			return err
		})
		plain, err := audit.Verify(ctx, pool)
		require.NoError(t, err)
		require.True(t, plain.OK(), "a cut tail leaves a chain that verifies by itself")

		res := verifyHead(t, pool, h)
		require.False(t, res.OK())
		require.Equal(t, "the chain was truncated: the saved head is event 10, but the chain ends at event 8", res.HeadProblem)
		res = verifyHead(t, pool, audit.Head{Hash: h.Hash})
		require.Equal(t, "the saved head "+h.Hash+" is not on the chain: it was truncated or rewritten", res.HeadProblem)
	})

	t.Run("Rewritten", func(t *testing.T) {
		t.Parallel()
		pool, _ := testdb.Pool(t)
		h := savedHead(t, pool, 10)
		// Change event 7 and re-hash it and everything after it, as someone
		// who knows the algorithm would.
		tamper(t, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `UPDATE audit_events SET details = jsonb_set(details, '{verdict}', '"reject"')
				WHERE id = (SELECT event_id FROM audit_chain WHERE seq = 7)`); err != nil {
				return err
			}
			// AuditScan reuses one event: keep copies.
			var events []*store.AuditEvent
			if err := store.AuditScan(ctx, tx, 6, func(e *store.AuditEvent) error { c := *e; events = append(events, &c); return nil }); err != nil {
				return err
			}
			prev := events[0].Hash
			for _, e := range events[1:] {
				e.PrevHash, e.Hash = prev, audit.Hash(prev, e)
				if _, err := tx.Exec(ctx, `UPDATE audit_chain SET prev_hash = $1, hash = $2 WHERE seq = $3`, e.PrevHash, e.Hash, e.Seq); err != nil {
					return err
				}
				prev = e.Hash
			}
			return nil
		})
		plain, err := audit.Verify(ctx, pool)
		require.NoError(t, err)
		require.True(t, plain.OK(), "a re-hashed chain verifies by itself: %d %s", plain.BrokenAt, plain.Problem)

		res := verifyHead(t, pool, h)
		require.False(t, res.OK())
		require.Regexp(t, `^the chain was rewritten: event 10 has hash [0-9a-f]{64}, the saved head says `+h.Hash+`$`, res.HeadProblem)
		require.NotContains(t, res.HeadProblem, "has hash "+h.Hash)
	})
}

func TestParseHead(t *testing.T) {
	hash := "ab" + hex.EncodeToString(make([]byte, 31))
	for _, tc := range []struct {
		in   string
		want audit.Head
	}{
		{`{"seq":12,"hash":"` + hash + `","at":"2026-11-21T20:00:00Z"}` + "\n", audit.Head{Seq: 12, Hash: hash}},
		{"12 " + hash + "\n", audit.Head{Seq: 12, Hash: hash}},
		{"12:" + hash, audit.Head{Seq: 12, Hash: hash}},
		{hash, audit.Head{Hash: hash}},
		{"12:" + "AB" + hash[2:], audit.Head{Seq: 12, Hash: hash}},
	} {
		h, err := audit.ParseHead(tc.in)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want.Seq, h.Seq)
		require.Equal(t, tc.want.Hash, h.Hash)
	}
	for _, bad := range []string{"", "xyz", hash[:62], hash + "00", "-1 " + hash, "x:" + hash, `{"seq":1}`, `{"seq":1,"hash":"` + hash + `","colour":1}`, `{"seq":-3,"hash":"` + hash + `"}`, "{"} {
		_, err := audit.ParseHead(bad)
		require.ErrorIs(t, err, audit.ErrBadHead, bad)
	}
}
