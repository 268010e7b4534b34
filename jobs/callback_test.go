package jobs_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertest"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/safehttp"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/jobs"
	"github.com/countersign/countersign/vocab"
)

// TestCallbackWorker: Enqueue inserts the job in the caller's transaction,
// on the callbacks queue with MaxAttempts; a failed attempt makes River
// retry at the Deliverer's backoff, and a success completes the job.
func TestCallbackWorker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	var calls atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	t.Cleanup(recv.Close)
	policy, err := safehttp.ParseAllow("127.0.0.1")
	require.NoError(t, err)
	sched, err := jobs.NewScheduler(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	outbox := callback.NewOutbox(pool, sched, policy, nil)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	id, err := outbox.Enqueue(ctx, tx, callback.Delivery{Subject: "s", Event: "e", URL: recv.URL, Body: []byte(`{}`)})
	require.NoError(t, err)
	rivertest.RequireInsertedTx[*riverpgxv5.Driver](ctx, t, tx, jobs.CallbackArgs{DeliveryID: id},
		&rivertest.RequireInsertedOpts{Queue: jobs.QueueCallbacks, MaxAttempts: callback.MaxAttempts})
	require.NoError(t, tx.Commit(ctx))

	w := rivertest.NewWorker(t, riverpgxv5.New(pool), &river.Config{}, &jobs.CallbackWorker{Deliverer: callback.NewDeliverer(pool, policy, nil)})
	res, err := w.Work(ctx, t, testTx(t, pool), jobs.CallbackArgs{DeliveryID: id}, nil)
	require.ErrorIs(t, err, callback.ErrNotDelivered)
	require.Equal(t, river.EventKindJobFailed, res.EventKind)
	require.WithinDuration(t, time.Now().Add(callback.Backoff(1)), res.Job.ScheduledAt, 5*time.Second)

	res, err = w.Work(ctx, t, testTx(t, pool), jobs.CallbackArgs{DeliveryID: id}, nil)
	require.NoError(t, err)
	require.Equal(t, river.EventKindJobCompleted, res.EventKind)
	d, err := store.DeliveryGet(ctx, pool, id)
	require.NoError(t, err)
	require.Equal(t, vocab.DeliveryDelivered, d.Status)
	require.Equal(t, 2, d.Attempts)
	require.EqualValues(t, 2, calls.Load())
}
