package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
)

// TestWithEffectTx checks the effect's transaction: the ledger entry
// commits with fn's writes or not at all, a recorded key refuses fn, a
// second execution racing for a key waits for the first and is refused,
// and keys that need quoting are stored as they are.
func TestWithEffectTx(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := b.run(t, "w")
	keys := func() []string {
		rows, err := b.pool.Query(b.ctx, `SELECT idempotency_key FROM side_effects WHERE run_id = $1 ORDER BY created_at, idempotency_key`, r.ID)
		require.NoError(t, err)
		ks, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return ks
	}

	boom := errors.New("boom")
	err := store.WithEffectTx(b.ctx, b.pool, r.ID+":fails", r.ID, "fails", func(context.Context, pgx.Tx) error { return boom })
	require.ErrorIs(t, err, boom)
	require.Empty(t, keys(), "a failed effect leaves no ledger entry")

	odd := r.ID + `:it's a \"step\" \\ ünïcode'); DROP TABLE side_effects; --`
	calls := 0
	effect := func(_ context.Context, tx pgx.Tx) error {
		calls++
		_, err := tx.Exec(b.ctx, `INSERT INTO demo_outbox (idempotency_key, run_id, kind, payload) VALUES ($1, $2, 'k', '{}')`, odd, r.ID)
		return err
	}
	require.NoError(t, store.WithEffectTx(b.ctx, b.pool, odd, r.ID, `it's "odd"`, effect))
	require.Equal(t, []string{odd}, keys(), "the key is stored exactly as given")
	err = store.WithEffectTx(b.ctx, b.pool, odd, r.ID, `it's "odd"`, effect)
	require.ErrorIs(t, err, store.ErrEffectRecorded)
	require.Equal(t, 1, calls, "a recorded effect does not run again")

	_, err = b.pool.Exec(b.ctx, `SELECT 1`) // the pool still serves after the refused BEGIN
	require.NoError(t, err)

	require.ErrorIs(t, store.WithEffectTx(b.ctx, b.pool, "bad\x00key", r.ID, "s", effect), store.ErrInvalidInput)
	require.ErrorIs(t, store.WithEffectTx(b.ctx, b.pool, "k", uuid.NewString(), "s", effect), store.ErrNotFound,
		"a run that does not exist")

	// Two executions racing for one key: the second waits for the first's
	// commit and is refused.
	raced := r.ID + ":raced"
	inFirst, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- store.WithEffectTx(b.ctx, b.pool, raced, r.ID, "raced", func(context.Context, pgx.Tx) error {
			close(inFirst)
			<-release
			return nil
		})
	}()
	<-inFirst
	second := make(chan error, 1)
	go func() {
		second <- store.WithEffectTx(b.ctx, b.pool, raced, r.ID, "raced", func(context.Context, pgx.Tx) error {
			t.Error("the second execution's effect ran")
			return nil
		})
	}()
	select {
	case err := <-second:
		t.Fatalf("the second execution did not wait for the first: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-first)
	require.ErrorIs(t, <-second, store.ErrEffectRecorded)
}

// TestWithEffectTxUnderAnyEncoding holds the ledger's literals to their
// meaning under the session settings that break quoted strings: a client
// encoding (SJIS) whose two-byte characters can swallow an escaping
// backslash, and backslash_quote off, which refuses \'. The text that
// broke out of a quoted literal under SJIS is stored as given and runs
// nothing.
func TestWithEffectTxUnderAnyEncoding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, dbURL := testdb.Pool(t)
	pc, err := pgxpool.ParseConfig(dbURL)
	require.NoError(t, err)
	pc.ConnConfig.RuntimeParams["client_encoding"] = "SJIS"
	pc.ConnConfig.RuntimeParams["backslash_quote"] = "off"
	sjis, err := pgxpool.NewWithConfig(ctx, pc)
	require.NoError(t, err)
	t.Cleanup(sjis.Close)
	var enc string
	require.NoError(t, sjis.QueryRow(ctx, `SHOW client_encoding`).Scan(&enc))
	require.Equal(t, "SJIS", enc)

	r, _, err := store.RunInsert(ctx, pool, store.RunInsertParams{Workflow: "w", BusinessKey: uuid.NewString(),
		Input: []byte(`{}`), StartedBy: "test"})
	require.NoError(t, err)
	step := `xぁ', (SELECT id FROM workflow_runs LIMIT 1), current_user); CREATE TABLE scratch_pwned(); --`
	key := r.ID + ":" + step
	require.NoError(t, store.WithEffectTx(ctx, sjis, key, r.ID, step, func(context.Context, pgx.Tx) error { return nil }))
	var gotKey, gotStep string
	require.NoError(t, pool.QueryRow(ctx, `SELECT idempotency_key, step_name FROM side_effects WHERE run_id = $1`, r.ID).Scan(&gotKey, &gotStep))
	require.Equal(t, key, gotKey, "the key is stored exactly as given")
	require.Equal(t, step, gotStep)
	var pwned *string
	require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass('scratch_pwned')::text`).Scan(&pwned))
	require.Nil(t, pwned, "nothing ran from the text")
}
