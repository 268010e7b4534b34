package callback_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/safehttp"
	"github.com/countersign/countersign/internal/store"
)

// BenchmarkDeliver measures one delivery end to end (lock, sign, POST to a
// local receiver, record the attempt) against its baseline, the same POST
// through the same client with no database: the difference is what the
// outbox costs per callback.
func BenchmarkDeliver(b *testing.B) {
	ctx := context.Background()
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(recv.Close)
	policy, err := safehttp.ParseAllow("127.0.0.1")
	require.NoError(b, err)
	body := bytes.Repeat([]byte(`{"k":"v"},`), 200) // about 2 KiB, an Approval's size

	b.Run("BaselinePOST", func(b *testing.B) {
		client := policy.Client()
		for b.Loop() {
			resp, err := client.Post(recv.URL, "application/json", bytes.NewReader(body))
			require.NoError(b, err)
			_, _, _ = safehttp.ReadBody(resp.Body)
		}
	})
	// One committed single-row write: the database's floor for anything
	// that records an attempt durably.
	b.Run("BaselineCommit", func(b *testing.B) {
		pool := poolFor(b)
		outbox := callback.NewOutbox(pool, &queue{}, policy, nil)
		id, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (int64, error) {
			return outbox.Enqueue(ctx, tx, callback.Delivery{Subject: "s", Event: "e", URL: recv.URL, Body: body})
		})
		require.NoError(b, err)
		for b.Loop() {
			_, err := pool.Exec(ctx, `UPDATE callback_deliveries SET attempts = attempts WHERE id = $1`, id)
			require.NoError(b, err)
		}
	})
	b.Run("Deliver", func(b *testing.B) {
		pool := poolFor(b)
		tokenID, _ := token(ctx, b, pool)
		outbox := callback.NewOutbox(pool, &queue{}, policy, nil)
		d := callback.NewDeliverer(pool, policy, nil)
		for b.Loop() {
			b.StopTimer()
			id, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (int64, error) {
				return outbox.Enqueue(ctx, tx, callback.Delivery{Subject: "s", Event: "e", TokenID: tokenID, URL: recv.URL, Body: body})
			})
			require.NoError(b, err)
			b.StartTimer()
			require.NoError(b, d.Deliver(ctx, id, 1))
		}
	})
}
