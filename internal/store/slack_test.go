package store_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
)

// TestSlackUpdateLockLetsDecisionsThrough: while the chat_update job holds
// a digest's message locked (it does across its chat.update call to Slack),
// a decision of another request shown in that digest records what it owes
// the message at once: it must not wait for Slack, holding its request's
// lock. Two updates of one message still take turns.
func TestSlackUpdateLockLetsDecisionsThrough(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	const a, b = "00000000-0000-0000-0000-00000000000a", "00000000-0000-0000-0000-00000000000b"
	require.NoError(t, store.SlackMessageInsert(ctx, pool, store.SlackMessage{Channel: "D1", TS: "1.1",
		RequestIDs: []string{a, b}, Blocks: json.RawMessage(`[]`), Text: "digest"}))
	n, err := store.SlackUpdatesInsert(ctx, pool, a, "Approved by x")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	ids, err := store.SlackUpdatesPending(ctx, pool, a)
	require.NoError(t, err)
	require.Len(t, ids, 1)

	// The job updating request a's copy, mid-call to Slack.
	job, err := pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = job.Rollback(ctx) })
	u, err := store.SlackUpdateLock(ctx, job, ids[0])
	require.NoError(t, err)

	// lockTimeout runs f in a transaction that gives up waiting on a lock after a second.
	lockTimeout := func(f func(tx pgx.Tx) error) error {
		return store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '1s'"); err != nil {
				return err
			}
			return f(tx)
		})
	}

	t.Run("DecisionOfAnotherRequestDoesNotWait", func(t *testing.T) {
		require.NoError(t, lockTimeout(func(tx pgx.Tx) error {
			n, err := store.SlackUpdatesInsert(ctx, tx, b, "Rejected by y")
			if err == nil {
				require.EqualValues(t, 1, n)
			}
			return err
		}))
	})

	t.Run("SecondUpdateOfTheMessageWaits", func(t *testing.T) {
		ids, err := store.SlackUpdatesPending(ctx, pool, b)
		require.NoError(t, err)
		require.Len(t, ids, 1)
		err = lockTimeout(func(tx pgx.Tx) error {
			_, err := store.SlackUpdateLock(ctx, tx, ids[0])
			return err
		})
		require.Error(t, err, "two updates of one message must not interleave")
	})

	// The job finishes as it does after Slack answered.
	require.NoError(t, store.SlackMessageSetBlocks(ctx, job, u.Message))
	require.NoError(t, store.SlackUpdateDone(ctx, job, ids[0], ""))
	require.NoError(t, job.Commit(ctx))
}
