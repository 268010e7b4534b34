package webhook_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/notice/webhook"
	"github.com/countersign/countersign/internal/safehttp"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
)

// queue counts the delivery jobs an outbox schedules.
type queue struct{ n int }

func (q *queue) EnqueueCallback(context.Context, pgx.Tx, int64, time.Time) error {
	q.n++
	return nil
}

// TestFanout: each subscription to an event's kind gets one delivery, a
// second fan-out of the same event adds none, other kinds get nothing.
func TestFanout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	allow, err := safehttp.ParseAllow("127.0.0.1")
	require.NoError(t, err)
	q := &queue{}
	svc := webhook.New(pool, callback.NewOutbox(pool, q, allow, nil), "https://cs.example.com")

	a, err := svc.Create(ctx, "http://127.0.0.1:9/a", []string{"run.failed", "request.waiting"}, "admin@example.com")
	require.NoError(t, err)
	require.Len(t, a.Secret, 64)
	_, err = svc.Create(ctx, "http://127.0.0.1:9/b", []string{"decision.recorded"}, "admin@example.com")
	require.NoError(t, err)
	_, err = svc.Create(ctx, "http://127.0.0.1:9/c", []string{"nope"}, "admin@example.com")
	require.ErrorIs(t, err, webhook.ErrInvalid)
	_, err = svc.Create(ctx, "http://169.254.169.254/latest", []string{"run.failed"}, "admin@example.com")
	require.ErrorIs(t, err, webhook.ErrInvalid)
	require.ErrorIs(t, err, safehttp.ErrRefused)

	var audited int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE kind = 'webhook.created' AND actor = 'admin@example.com'`).Scan(&audited))
	require.Equal(t, 2, audited, "each subscription made is audited; refused ones are not")

	e, err := store.NoticeEventInsert(ctx, pool, &store.NoticeEvent{Kind: "run.failed", Detail: "boom"})
	require.NoError(t, err)
	for range 2 {
		require.NoError(t, store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error { return svc.Fanout(ctx, tx, e) }))
	}
	require.Equal(t, 1, q.n, "one delivery: one subscription, however many fan-outs")
	ds, err := store.DeliveryListBySubject(ctx, pool, webhook.Subject(e.ID))
	require.NoError(t, err)
	require.Len(t, ds, 1)
	require.Equal(t, "http://127.0.0.1:9/a", ds[0].URL)

	// The delivery is signed with the subscription's secret.
	sent, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.DeliveryToSend, error) {
		return store.DeliveryLockForSend(ctx, tx, ds[0].ID)
	})
	require.NoError(t, err)
	require.Equal(t, a.Secret, callback.SecretText(sent.Secret))

	// Deleting the subscription drops its deliveries.
	require.NoError(t, svc.Delete(ctx, a.ID, "admin@example.com"))
	ds, err = store.DeliveryListBySubject(ctx, pool, webhook.Subject(e.ID))
	require.NoError(t, err)
	require.Empty(t, ds)
	require.ErrorIs(t, svc.Delete(ctx, a.ID, "admin@example.com"), store.ErrNotFound)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE kind = 'webhook.deleted'`).Scan(&audited))
	require.Equal(t, 1, audited)
}
