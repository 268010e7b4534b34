package web_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/webhook"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// hookReceiver keeps what a webhook URL received.
type hookReceiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []struct {
		header http.Header
		body   []byte
	}
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	r := &hookReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, struct {
			header http.Header
			body   []byte
		}{req.Header.Clone(), b})
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *hookReceiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// checkSignature verifies Countersign-Signature as a receiver would, with
// the secret the admin page showed and the standard library.
func checkSignature(t *testing.T, secret string, h http.Header, body []byte) {
	t.Helper()
	var ts, v1 string
	for _, part := range strings.Split(h.Get("Countersign-Signature"), ",") {
		k, v, _ := strings.Cut(part, "=")
		if k == "t" {
			ts = v
		} else if k == "v1" {
			v1 = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), time.Unix(sec, 0), time.Minute)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(body)))
	require.Equal(t, hex.EncodeToString(mac.Sum(nil)), v1)
}

// TestWebhooks: an admin subscribes a URL to request.waiting on the admin
// page (CSRF-checked, secret shown once); a waiting request is delivered to
// the local receiver (allow-listed loopback) through the callback outbox,
// signed with that secret, once; deleting the subscription stops it.
func TestWebhooks(t *testing.T) {
	t.Parallel()
	c := startConsoleWith(t, testapp.Options{CallbackAllow: "127.0.0.1"})
	recv := newHookReceiver(t)
	admin := c.client(t, "admin@example.com")

	t.Run("OnlyAdmins", func(t *testing.T) {
		_, status := c.get(t, c.client(t, "approver@example.com"), "/admin/webhooks")
		require.Equal(t, http.StatusForbidden, status)
	})
	t.Run("CSRFRequired", func(t *testing.T) {
		resp, err := admin.PostForm(c.Addr+"/admin/webhooks", url.Values{"url": {recv.URL}, "event": {"request.waiting"}})
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		list, err := store.WebhookList(context.Background(), c.Pool)
		require.NoError(t, err)
		require.Empty(t, list)
	})
	t.Run("BadInputRefused", func(t *testing.T) {
		for name, form := range map[string]url.Values{
			"NoEvent":      {"url": {recv.URL}},
			"UnknownEvent": {"url": {recv.URL}, "event": {"nope"}},
			"NotHTTP":      {"url": {"ftp://example.com/x"}, "event": {"request.waiting"}},
			"PrivateHost":  {"url": {"http://10.0.0.1/x"}, "event": {"request.waiting"}},
		} {
			resp, _ := c.post(t, admin, "/admin/webhooks", "/admin/webhooks", form)
			require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, name)
		}
		list, err := store.WebhookList(context.Background(), c.Pool)
		require.NoError(t, err)
		require.Empty(t, list)
	})

	resp, page := c.post(t, admin, "/admin/webhooks", "/admin/webhooks", url.Values{"url": {recv.URL + "/hook"},
		"event": {string(notice.RequestWaiting), string(notice.DecisionRecorded)}})
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(page))
	require.NoError(t, err)
	secret := strings.TrimSpace(doc.Find(`[data-testid=webhook-secret]`).Text())
	require.Len(t, secret, 64)
	listed, _ := c.get(t, admin, "/admin/webhooks")
	require.Zero(t, listed.Find(`[data-testid=webhook-secret]`).Length(), "the secret is shown once")
	require.Contains(t, listed.Find(`[data-testid=webhooks]`).Text(), recv.URL+"/hook")

	_, req := c.startRun(t, "support_triage", "T-hook", demo.Ticket{ID: "T-hook", Customer: "ada@example.com",
		Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
	require.Eventually(t, func() bool { return recv.count() >= 1 }, 20*time.Second, 20*time.Millisecond)
	recv.mu.Lock()
	got := recv.got[0]
	recv.mu.Unlock()
	checkSignature(t, secret, got.header, got.body)
	require.Equal(t, string(notice.RequestWaiting), got.header.Get("Countersign-Event"))
	var body webhook.Body
	require.NoError(t, json.Unmarshal(got.body, &body))
	require.Equal(t, string(notice.RequestWaiting), body.Kind)
	require.Equal(t, req.ID, *body.RequestID)
	require.Equal(t, req.PayloadHash, body.Request.PayloadHash)
	require.Equal(t, "outbound-email", body.Request.Rule)
	require.True(t, strings.HasSuffix(body.Link, "/requests/"+req.ID))

	// The delivery is in the outbox with its attempt recorded.
	// The receiver answered before the sender's transaction recorded it.
	var recs []callback.Record
	require.Eventually(t, func() bool {
		var err error
		recs, err = c.App.Callbacks.List(context.Background(), webhook.Subject(body.ID))
		require.NoError(t, err)
		return len(recs) == 1 && recs[0].Status == "delivered"
	}, 10*time.Second, 20*time.Millisecond, "the delivery is recorded as delivered")
	require.Equal(t, 1, recs[0].Attempts)

	t.Run("DecisionWithNoUserSubscribed", func(t *testing.T) {
		// No user's preferences name decision.recorded: the webhook alone
		// is a subscriber, and gets the event.
		_, err := c.Engine.Decide(context.Background(), workflow.DecideParams{RequestID: req.ID, Verdict: vocab.VerdictApprove,
			PayloadHash: req.PayloadHash, Actor: workflow.Actor{Name: "reviewer@example.com", Roles: []vocab.Role{vocab.RoleReviewer}}})
		require.NoError(t, err)
		require.Eventually(t, func() bool { return recv.count() >= 2 }, 20*time.Second, 20*time.Millisecond)
		recv.mu.Lock()
		got := recv.got[1]
		recv.mu.Unlock()
		checkSignature(t, secret, got.header, got.body)
		var body webhook.Body
		require.NoError(t, json.Unmarshal(got.body, &body))
		require.Equal(t, string(notice.DecisionRecorded), body.Kind)
		require.Equal(t, "approved", body.Request.Status)
	})
	t.Run("Delete", func(t *testing.T) {
		list, err := store.WebhookList(context.Background(), c.Pool)
		require.NoError(t, err)
		require.Len(t, list, 1)
		resp, _ := c.post(t, admin, "/admin/webhooks", "/admin/webhooks/"+strconv.FormatInt(list[0].ID, 10)+"/delete", url.Values{})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		list, err = store.WebhookList(context.Background(), c.Pool)
		require.NoError(t, err)
		require.Empty(t, list)
		resp, _ = c.post(t, admin, "/admin/webhooks", "/admin/webhooks/999999/delete", url.Values{})
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	})
}
