package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// TestDeliveriesPage: a callback to a loopback receiver, with no allow-list,
// fails without connecting; admins see it, its attempt and its error, and
// redeliver it with a CSRF-protected POST; others may not.
func TestDeliveriesPage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := startConsole(t, nil)
	var hits atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	t.Cleanup(recv.Close)

	id, err := store.WithTxV(ctx, c.Pool, func(ctx context.Context, tx pgx.Tx) (int64, error) {
		return c.App.Callbacks.Enqueue(ctx, tx, callback.Delivery{Subject: "<b>run</b>", Event: "approval.decided",
			URL: recv.URL + "/hook?<script>", Body: []byte(`{}`)})
	})
	require.NoError(t, err)
	waitFailed := func(attempts int) {
		require.Eventually(t, func() bool {
			d, err := store.DeliveryGet(ctx, c.Pool, id)
			require.NoError(t, err)
			return d.Status == vocab.DeliveryFailed && d.Attempts == attempts
		}, 20*time.Second, 20*time.Millisecond)
	}
	waitFailed(1)
	path := "/admin/deliveries/" + strconv.FormatInt(id, 10)

	t.Run("NotForOthers", func(t *testing.T) {
		hc := c.client(t, "approver@example.com")
		for _, p := range []string{"/admin/deliveries", path} {
			_, code := c.get(t, hc, p)
			require.Equal(t, http.StatusForbidden, code, p)
		}
		resp, _ := c.post(t, hc, "/", path+"/redeliver", url.Values{})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	})

	admin := c.client(t, "admin@example.com")
	t.Run("ListFailed", func(t *testing.T) {
		doc, code := c.get(t, admin, "/admin/deliveries?status=failed")
		require.Equal(t, http.StatusOK, code)
		row := doc.Find(`[data-testid="delivery-` + strconv.FormatInt(id, 10) + `"]`)
		require.Equal(t, 1, row.Length())
		require.Equal(t, "failed", row.Find(`[data-testid=delivery-status]`).Text())
		require.Contains(t, row.Text(), "not a public address")
		require.Contains(t, row.Text(), "<b>run</b>", "shown as text")
		require.Zero(t, doc.Find("b:contains(run)").Length(), "never as markup")

		doc, _ = c.get(t, admin, "/admin/deliveries?status=delivered")
		require.Equal(t, 1, doc.Find(`[data-testid=no-deliveries]`).Length())
		_, code = c.get(t, admin, "/admin/deliveries?status=lost")
		require.Equal(t, http.StatusBadRequest, code)
	})

	t.Run("ShowAttempts", func(t *testing.T) {
		doc, code := c.get(t, admin, path)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, 1, doc.Find(`[data-testid=attempts] tbody tr`).Length())
		require.Equal(t, 1, doc.Find(`[data-testid=redeliver]`).Length())
		_, code = c.get(t, admin, "/admin/deliveries/999999")
		require.Equal(t, http.StatusNotFound, code)
	})

	t.Run("RedeliverNeedsCSRF", func(t *testing.T) {
		resp, err := admin.PostForm(c.Addr+path+"/redeliver", url.Values{})
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		d, err := store.DeliveryGet(ctx, c.Pool, id)
		require.NoError(t, err)
		require.Equal(t, vocab.DeliveryFailed, d.Status, "nothing changed")
	})

	t.Run("Redeliver", func(t *testing.T) {
		resp, _ := c.post(t, admin, path, path+"/redeliver", url.Values{})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		// Sent again, refused again: a second attempt, still never connected.
		waitFailed(2)
		require.Zero(t, hits.Load())
		resp, _ = c.post(t, admin, path, "/admin/deliveries/999999/redeliver", url.Values{})
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	})
}
