package callback_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/safehttp"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/vocab"
)

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
}

// receiver is an httptest server answering with the statuses given, in
// order (the last one repeats), and keeping what it received.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	got      []received
	statuses []int
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	r := &receiver{statuses: statuses}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{header: req.Header.Clone(), body: b})
		status := r.statuses[min(len(r.got), len(r.statuses))-1]
		r.mu.Unlock()
		w.WriteHeader(status)
		_, _ = io.WriteString(w, http.StatusText(status))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// verify checks a Countersign-Signature as a receiver would, with nothing
// but the secret as shown and the standard library.
func verify(t *testing.T, secret string, h http.Header, body []byte) {
	t.Helper()
	var ts, v1 string
	for _, part := range strings.Split(h.Get("Countersign-Signature"), ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), time.Unix(sec, 0), time.Minute)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	require.Equal(t, hex.EncodeToString(mac.Sum(nil)), v1, "signature")
}

// token makes a user and an approvals token; the callback secret is as the
// admin page and the CLI show it.
func token(ctx context.Context, t testing.TB, pool *pgxpool.Pool) (id, secret string) {
	t.Helper()
	u := factory.User(ctx, t, pool, nil)
	tok, _, err := account.CreateToken(ctx, pool, account.TokenParams{Email: u.Email, Name: "agent",
		Scopes: []string{account.ScopeRequestsRead}, By: "test"})
	require.NoError(t, err)
	require.Len(t, tok.CallbackSecret, 32)
	return tok.PublicID, callback.SecretText(tok.CallbackSecret)
}

// enqueue writes d through o in a transaction that commits.
func enqueue(ctx context.Context, t *testing.T, pool *pgxpool.Pool, o *callback.Outbox, d callback.Delivery) int64 {
	t.Helper()
	id, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (int64, error) { return o.Enqueue(ctx, tx, d) })
	require.NoError(t, err)
	return id
}

// waitStatus polls the subject's deliveries until the first one has status.
func waitStatus(ctx context.Context, t *testing.T, o *callback.Outbox, subject string, status vocab.DeliveryStatus) callback.Record {
	t.Helper()
	var recs []callback.Record
	require.Eventually(t, func() bool {
		var err error
		recs, err = o.List(ctx, subject)
		require.NoError(t, err)
		return len(recs) == 1 && recs[0].Status == string(status)
	}, 20*time.Second, 20*time.Millisecond, "deliveries: %+v", recs)
	return recs[0]
}

// TestDeliveryThroughRiver runs a real process: the worker, River and the
// outbox, with a receiver on loopback permitted by the allow-list.
func TestDeliveryThroughRiver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testapp.Start(t, testapp.Options{CallbackAllow: "127.0.0.1",
		CallbackBackoff: func(int) time.Duration { return 10 * time.Millisecond }})
	tokenID, secret := token(ctx, t, b.Pool)

	t.Run("SignedDelivery", func(t *testing.T) {
		r := newReceiver(t, http.StatusNoContent)
		body := []byte(`{"id":"run-1","status":"approved"}`)
		id := enqueue(ctx, t, b.Pool, b.App.Callbacks, callback.Delivery{Subject: "run-1", Event: "approval.decided",
			TokenID: tokenID, URL: r.URL + "/hook", Body: body})
		rec := waitStatus(ctx, t, b.App.Callbacks, "run-1", vocab.DeliveryDelivered)
		require.Equal(t, id, rec.ID)
		require.Equal(t, 1, rec.Attempts)
		require.Equal(t, http.StatusNoContent, *rec.LastStatusCode)
		require.NotNil(t, rec.DeliveredAt)
		require.Nil(t, rec.NextAttemptAt)

		got := r.received()
		require.Len(t, got, 1)
		require.Equal(t, body, got[0].body)
		require.Equal(t, "application/json", got[0].header.Get("Content-Type"))
		require.Equal(t, "approval.decided", got[0].header.Get("Countersign-Event"))
		require.Equal(t, strconv.FormatInt(id, 10), got[0].header.Get("Countersign-Delivery"))
		verify(t, secret, got[0].header, got[0].body)
	})

	t.Run("RetriedByRiverAfter500", func(t *testing.T) {
		r := newReceiver(t, http.StatusInternalServerError, http.StatusOK)
		id := enqueue(ctx, t, b.Pool, b.App.Callbacks, callback.Delivery{Subject: "run-retry", Event: "approval.decided",
			TokenID: tokenID, URL: r.URL, Body: []byte(`{"id":"run-retry"}`)})
		// River retries the job after the (shortened) backoff.
		rec := waitStatus(ctx, t, b.App.Callbacks, "run-retry", vocab.DeliveryDelivered)
		require.Equal(t, 2, rec.Attempts)
		got := r.received()
		require.Len(t, got, 2, "one failed attempt, one success, nothing after")
		for _, g := range got {
			verify(t, secret, g.header, g.body)
		}
		attempts, err := store.AttemptList(ctx, b.Pool, id)
		require.NoError(t, err)
		require.Len(t, attempts, 2)
		require.Equal(t, 500, *attempts[0].StatusCode)
		require.Equal(t, 200, *attempts[1].StatusCode)
		time.Sleep(100 * time.Millisecond)
		require.Len(t, r.received(), 2)
	})

	t.Run("RollbackSendsNothing", func(t *testing.T) {
		r := newReceiver(t, http.StatusOK)
		tx, err := b.Pool.Begin(ctx)
		require.NoError(t, err)
		_, err = b.App.Callbacks.Enqueue(ctx, tx, callback.Delivery{Subject: "run-rolled-back", Event: "approval.decided",
			TokenID: tokenID, URL: r.URL, Body: []byte(`{}`)})
		require.NoError(t, err)
		require.NoError(t, tx.Rollback(ctx))
		// A committed delivery enqueued after it is sent, so the worker has
		// had every chance to send the rolled-back one too.
		enqueue(ctx, t, b.Pool, b.App.Callbacks, callback.Delivery{Subject: "run-after", Event: "approval.decided",
			TokenID: tokenID, URL: r.URL + "/after", Body: []byte(`{}`)})
		waitStatus(ctx, t, b.App.Callbacks, "run-after", vocab.DeliveryDelivered)
		recs, err := b.App.Callbacks.List(ctx, "run-rolled-back")
		require.NoError(t, err)
		require.Empty(t, recs)
		require.Len(t, r.received(), 1)
	})
}

// TestDeliverySurvivesWorkerLoss: the delivery is committed by a process
// with no worker (as if the worker died between the outbox write and the
// send); a worker started later sends it, once.
func TestDeliverySurvivesWorkerLoss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := testdb.Pool(t)
	web := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, CallbackAllow: "127.0.0.1"})
	tokenID, _ := token(ctx, t, pool)
	r := newReceiver(t, http.StatusOK)
	enqueue(ctx, t, pool, web.App.Callbacks, callback.Delivery{Subject: "run-crash", Event: "approval.decided",
		TokenID: tokenID, URL: r.URL, Body: []byte(`{"x":1}`)})
	time.Sleep(200 * time.Millisecond)
	require.Empty(t, r.received(), "no worker, nothing sent")

	worker := testapp.StartOn(t, pool, url, testapp.Options{CallbackAllow: "127.0.0.1"})
	waitStatus(ctx, t, worker.App.Callbacks, "run-crash", vocab.DeliveryDelivered)
	require.Len(t, r.received(), 1)
}

// queue records the jobs an Outbox would schedule, for tests that call the
// Deliverer themselves.
type queue struct{ ids atomic.Int64 }

func (q *queue) EnqueueCallback(_ context.Context, _ pgx.Tx, id int64, _ time.Time) error {
	q.ids.Store(id)
	return nil
}

type directBundle struct {
	pool      *pgxpool.Pool
	outbox    *callback.Outbox
	deliverer *callback.Deliverer
	tokenID   string
	secret    string
}

// poolFor is a pool on a fresh test database.
func poolFor(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, _ := testdb.Pool(t)
	return pool
}

func setup(t *testing.T, allow string) *directBundle {
	t.Helper()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	policy, err := safehttp.ParseAllow(allow)
	require.NoError(t, err)
	b := &directBundle{pool: pool, outbox: callback.NewOutbox(pool, &queue{}, policy, nil),
		deliverer: callback.NewDeliverer(pool, policy, nil)}
	b.tokenID, b.secret = token(ctx, t, pool)
	return b
}

func TestDeliver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("RetryAfter500", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "127.0.0.1")
		r := newReceiver(t, http.StatusInternalServerError, http.StatusOK)
		id := enqueue(ctx, t, b.pool, b.outbox, callback.Delivery{Subject: "s", Event: "approval.decided",
			TokenID: b.tokenID, URL: r.URL, Body: []byte(`{"n":1}`)})

		err := b.deliverer.Deliver(ctx, id, 1)
		require.ErrorIs(t, err, callback.ErrNotDelivered)
		recs, err := b.outbox.List(ctx, "s")
		require.NoError(t, err)
		require.Equal(t, string(vocab.DeliveryPending), recs[0].Status)
		require.Equal(t, 1, recs[0].Attempts)
		require.Equal(t, http.StatusInternalServerError, *recs[0].LastStatusCode)
		require.Contains(t, recs[0].LastError, "HTTP 500")
		require.NotNil(t, recs[0].NextAttemptAt)
		require.WithinDuration(t, time.Now().Add(callback.Backoff(1)), *recs[0].NextAttemptAt, 5*time.Second)

		require.NoError(t, b.deliverer.Deliver(ctx, id, 2))
		// A job that runs again after the success (a rescued job, a retry
		// whose first run's outcome was lost) sends nothing.
		require.NoError(t, b.deliverer.Deliver(ctx, id, 3))

		got := r.received()
		require.Len(t, got, 2)
		for _, g := range got {
			verify(t, b.secret, g.header, g.body)
		}
		rec := waitStatus(ctx, t, b.outbox, "s", vocab.DeliveryDelivered)
		require.Equal(t, 2, rec.Attempts)
		attempts, err := store.AttemptList(ctx, b.pool, id)
		require.NoError(t, err)
		require.Len(t, attempts, 2)
		require.Equal(t, 500, *attempts[0].StatusCode)
		require.Equal(t, 200, *attempts[1].StatusCode)
		require.Nil(t, attempts[1].Error)
	})

	t.Run("PrivateAddressRefusedNeverConnected", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "") // no allow-list: loopback is refused
		r := newReceiver(t, http.StatusOK)
		require.ErrorIs(t, b.outbox.Check(r.URL), safehttp.ErrRefused)
		for name, u := range map[string]string{
			"Literal": r.URL,
			// A name passes the submit-time check and is refused when its
			// address is dialled.
			"Name": strings.Replace(r.URL, "127.0.0.1", "localhost", 1),
		} {
			id := enqueue(ctx, t, b.pool, b.outbox, callback.Delivery{Subject: name, Event: "approval.decided",
				TokenID: b.tokenID, URL: u, Body: []byte(`{}`)})
			require.NoError(t, b.deliverer.Deliver(ctx, id, 1), "refused for good: no retry")
			rec := waitStatus(ctx, t, b.outbox, name, vocab.DeliveryFailed)
			require.Equal(t, 1, rec.Attempts)
			require.Nil(t, rec.LastStatusCode)
			require.Contains(t, rec.LastError, "not a public address", name)
		}
		require.Empty(t, r.received())
	})

	t.Run("LastAttemptFails", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "127.0.0.1")
		r := newReceiver(t, http.StatusServiceUnavailable, http.StatusOK)
		id := enqueue(ctx, t, b.pool, b.outbox, callback.Delivery{Subject: "s", Event: "e", TokenID: b.tokenID,
			URL: r.URL, Body: []byte(`{}`)})
		require.NoError(t, b.deliverer.Deliver(ctx, id, callback.MaxAttempts), "no retry after the last attempt")
		rec := waitStatus(ctx, t, b.outbox, "s", vocab.DeliveryFailed)
		require.Nil(t, rec.NextAttemptAt)

		// Redeliver makes it pending again with a new job; it then succeeds.
		require.NoError(t, b.outbox.Redeliver(ctx, id))
		require.ErrorIs(t, b.outbox.Redeliver(ctx, id), store.ErrNotFound, "only a failed delivery")
		require.NoError(t, b.deliverer.Deliver(ctx, id, 1))
		rec = waitStatus(ctx, t, b.outbox, "s", vocab.DeliveryDelivered)
		require.Equal(t, 2, rec.Attempts)
		require.Len(t, r.received(), 2)
	})

	t.Run("ConcurrentJobsSendOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "127.0.0.1")
		r := newReceiver(t, http.StatusOK)
		id := enqueue(ctx, t, b.pool, b.outbox, callback.Delivery{Subject: "s", Event: "e", TokenID: b.tokenID,
			URL: r.URL, Body: []byte(`{}`)})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() { defer wg.Done(); require.NoError(t, b.deliverer.Deliver(ctx, id, 1)) }()
		}
		wg.Wait()
		require.Len(t, r.received(), 1)
	})

	t.Run("Unsigned", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "127.0.0.1")
		r := newReceiver(t, http.StatusOK)
		id := enqueue(ctx, t, b.pool, b.outbox, callback.Delivery{Subject: "s", Event: "e", URL: r.URL, Body: []byte(`{}`)})
		require.NoError(t, b.deliverer.Deliver(ctx, id, 1))
		require.Empty(t, r.received()[0].header.Get("Countersign-Signature"))
	})

	t.Run("EnqueueRefusesBadFields", func(t *testing.T) {
		t.Parallel()
		b := setup(t, "")
		for name, d := range map[string]callback.Delivery{
			"NoSubject": {Event: "e", URL: "https://example.com"},
			"NoEvent":   {Subject: "s", URL: "https://example.com"},
			"NoURL":     {Subject: "s", Event: "e"},
			"LongURL":   {Subject: "s", Event: "e", URL: "https://example.com/" + strings.Repeat("a", safehttp.MaxURL)},
			"BigBody":   {Subject: "s", Event: "e", URL: "https://example.com", Body: make([]byte, callback.DefaultMaxBody+1)},
		} {
			_, err := store.WithTxV(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) (int64, error) { return b.outbox.Enqueue(ctx, tx, d) })
			require.ErrorIs(t, err, callback.ErrInvalid, name)
		}
		_, err := store.WithTxV(ctx, b.pool, func(ctx context.Context, tx pgx.Tx) (int64, error) {
			return b.outbox.Enqueue(ctx, tx, callback.Delivery{Subject: "s", Event: "e", URL: "https://example.com", TokenID: "cs_00000000"})
		})
		require.ErrorIs(t, err, store.ErrNotFound, "unknown token")
	})
}
