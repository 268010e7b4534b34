package web_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/mailsink"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
	"github.com/countersign/countersign/web"
)

// mailParts reads a received message's headers and its plain and HTML parts.
func mailParts(t *testing.T, raw []byte) (mail.Header, string, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/alternative", mt)
	r := multipart.NewReader(m.Body, params["boundary"])
	parts := map[string]string{}
	for {
		p, err := r.NextPart() // undoes quoted-printable
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		b, err := io.ReadAll(p)
		require.NoError(t, err)
		parts[ct] = string(b)
	}
	require.Contains(t, parts, "text/plain")
	require.Contains(t, parts, "text/html")
	return m.Header, parts["text/plain"], parts["text/html"]
}

func mailTo(mails []mailsink.Mail, addr string) []mailsink.Mail {
	var out []mailsink.Mail
	for _, m := range mails {
		for _, to := range m.To {
			if strings.EqualFold(to, addr) {
				out = append(out, m)
			}
		}
	}
	return out
}

// TestNoticeMail: a request that waits is mailed over SMTP to the users who
// may decide it (and no one else), with a plain and an HTML part naming the
// action, risk, rule and deadline; its link leads through sign-in to the
// review page.
func TestNoticeMail(t *testing.T) {
	t.Parallel()
	sink, err := mailsink.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close() })
	c := startConsoleWith(t, testapp.Options{SMTP: sink.Config()})
	_, req := c.startRun(t, "support_triage", "T-mail", demo.Ticket{ID: "mail", Customer: "a@example.com", Subject: "Refund",
		Body: "broken", OrderTotal: 900}, "api@example.com")
	require.Equal(t, "big-refund", req.Rule)

	// big-refund: approvers (two of them) and admins may decide it.
	mails := sink.Wait(3, 20*time.Second)
	require.Len(t, mails, 3)
	require.Empty(t, mailTo(mails, "reviewer@example.com"))
	require.Empty(t, mailTo(mails, "viewer@example.com"))
	mine := mailTo(mails, "approver@example.com")
	require.Len(t, mine, 1)

	h, body, html := mailParts(t, mine[0].Data)
	// Without COUNTERSIGN_PUBLIC_URL links name the listener's port on localhost.
	link := strings.Replace(c.Addr, "127.0.0.1", "localhost", 1) + "/requests/" + req.ID
	subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	require.NoError(t, err)
	require.Equal(t, "Countersign: A request waits for you — "+req.Summary, subject)
	for _, want := range []string{"Action:   payment.refund", "Risk:     high", "Rule:     big-refund", "Deadline: ", link, req.Summary} {
		require.Contains(t, body, want)
	}
	require.Contains(t, html, `href="`+link+`"`)
	require.Contains(t, html, "big-refund")
	require.Contains(t, body, "Nothing is decided from this mail")

	// The link asks for sign-in first, then lands on the review page.
	ctx := browser(t)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(link)))
	waitLocation(ctx, t, "/login?next=")
	require.NoError(t, chromedp.Run(ctx,
		chromedp.SendKeys(`[data-testid=email]`, "approver@example.com", chromedp.ByQuery),
		chromedp.SendKeys(`[data-testid=password]`, password, chromedp.ByQuery),
		clickOn(`[data-testid=login-submit]`),
	))
	waitLocation(ctx, t, "/requests/"+req.ID)
	require.Contains(t, text(ctx, t, `[data-testid=summary]`), req.Summary)
}

// TestLoginNext: sign-in returns to the page asked for, and only to a path
// on this site.
func TestLoginNext(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"/requests/abc?x=1":     "/requests/abc?x=1",
		"//evil.example/":       "/",
		"/\\evil.example":       "/",
		"https://evil.example/": "/",
		"/%0d%0aSet-Cookie":     "/%0d%0aSet-Cookie", // still a path; the encoding stays in it
		"/a\r\nb":               "/",
		"javascript:alert(1)":   "/",
		"":                      "/",
	} {
		require.Equal(t, want, web.SafeNext(next), "next %q", next)
	}

	c := startConsole(t, nil)
	jar, err := newJar()
	require.NoError(t, err)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(c.Addr + "/runs?status=failed")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, "/login?next=%2Fruns%3Fstatus%3Dfailed", resp.Header.Get("Location"))

	for next, want := range map[string]string{"/runs?status=failed": "/runs?status=failed", "//evil.example/x": "/"} {
		jar, _ := newJar()
		hc.Jar = jar
		token := c.csrf(t, hc, "/login?next="+url.QueryEscape(next))
		req, _ := http.NewRequest(http.MethodPost, c.Addr+"/login", strings.NewReader(url.Values{"_csrf": {token},
			"email": {"reviewer@example.com"}, "password": {password}, "next": {next}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", c.Addr)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, want, resp.Header.Get("Location"), "next %q", next)
	}
}

// TestNoticeDeadlineReminders: a request with a deadline gets reminder jobs
// at 50% and 90% of its time; each emits its reminder only once its time has
// come by the app's clock, and a decided request gets none.
func TestNoticeDeadlineReminders(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	c := startConsoleWith(t, testapp.Options{Now: now})
	ctx := context.Background()
	_, req := c.startRun(t, "support_triage", "T-dl", demo.Ticket{ID: "dl", Customer: "a@example.com", Subject: "Refund",
		Body: "broken", OrderTotal: 900}, "api@example.com")
	require.NotNil(t, req.Deadline) // 4 h

	span := req.Deadline.Sub(req.CreatedAt)
	for kind, frac := range map[string]float64{"deadline.half": 0.5, "deadline.near": 0.9} {
		var at time.Time
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT scheduled_at FROM river_job WHERE kind = 'notice_reminder'
			AND args->>'request_id' = $1 AND args->>'kind' = $2`, req.ID, kind).Scan(&at))
		require.WithinDuration(t, req.CreatedAt.Add(time.Duration(float64(span)*frac)), at, time.Second, kind)
	}
	events := func(kind notice.Kind) int {
		var n int
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM notice_events WHERE kind = $1 AND request_id = $2`, string(kind), req.ID).Scan(&n))
		return n
	}

	retry, err := c.Engine.Remind(ctx, req.ID, notice.DeadlineHalf)
	require.NoError(t, err)
	require.NotNil(t, retry, "too early: try again later")
	require.Zero(t, events(notice.DeadlineHalf))

	offset.Store(int64(span/2 + time.Minute))
	retry, err = c.Engine.Remind(ctx, req.ID, notice.DeadlineHalf)
	require.NoError(t, err)
	require.Nil(t, retry)
	require.Equal(t, 1, events(notice.DeadlineHalf))
	retry, err = c.Engine.Remind(ctx, req.ID, notice.DeadlineNear)
	require.NoError(t, err)
	require.NotNil(t, retry, "90% has not come yet")

	// Decided before 90%: nothing more.
	hc := c.client(t, "admin@example.com")
	resp, _ := c.post(t, hc, "/requests/"+req.ID, "/requests/"+req.ID+"/decision", url.Values{"verdict": {"reject"},
		"reason": {"no"}, "payload_hash": {req.PayloadHash}})
	require.Less(t, resp.StatusCode, 400)
	got, err := store.RequestGet(ctx, c.Pool, req.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestRejected, got.Status)
	offset.Store(int64(span))
	retry, err = c.Engine.Remind(ctx, req.ID, notice.DeadlineNear)
	require.NoError(t, err)
	require.Nil(t, retry)
	require.Zero(t, events(notice.DeadlineNear), "a decided request sends nothing")
}

// TestNoticePages: a user sets their own preferences (checked, CSRF), an
// admin sets defaults per role and redelivers a failed message; others may
// not reach the admin pages.
func TestNoticePages(t *testing.T) {
	t.Parallel()
	sink, err := mailsink.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close() })
	c := startConsoleWith(t, testapp.Options{SMTP: sink.Config()})
	ctx := context.Background()
	reviewer := c.client(t, "reviewer@example.com")
	admin := c.client(t, "admin@example.com")
	rev, err := store.UserGetByEmail(ctx, c.Pool, "reviewer@example.com")
	require.NoError(t, err)

	t.Run("Settings", func(t *testing.T) {
		doc, code := c.get(t, reviewer, "/settings/notifications")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, doc.Find("[data-testid=prefs-source]").Text(), "role's defaults")
		_, checked := doc.Find(`[data-testid="event-request.waiting"]`).Attr("checked")
		require.True(t, checked, "the built-in defaults")

		resp, body := c.post(t, reviewer, "/settings/notifications", "/settings/notifications", url.Values{"channel": {"email"},
			"event": {"request.waiting"}, "quiet_start": {"22:00"}, "quiet_end": {"07:00"}, "time_zone": {"Mars/Olympus"}})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
		require.Contains(t, body, "Unknown time zone")
		_, err := store.NoticePreferenceGet(ctx, c.Pool, rev.ID)
		require.ErrorIs(t, err, store.ErrNotFound, "nothing stored")

		resp, _ = c.post(t, reviewer, "/settings/notifications", "/settings/notifications", url.Values{"channel": {"slack"}, "event": {"request.waiting"}})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "a channel this installation does not have")

		resp, err = reviewer.PostForm(c.Addr+"/settings/notifications", url.Values{"channel": {"email"}})
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "no CSRF token")

		resp, _ = c.post(t, reviewer, "/settings/notifications", "/settings/notifications", url.Values{"channel": {"email"},
			"event": {"request.waiting", "decision.recorded"}, "quiet_start": {"22:00"}, "quiet_end": {"07:00"}, "time_zone": {"Europe/Berlin"}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		p, err := store.NoticePreferenceGet(ctx, c.Pool, rev.ID)
		require.NoError(t, err)
		require.Equal(t, store.NoticePrefs{Channels: []string{"email"}, Events: []string{"request.waiting", "decision.recorded"},
			QuietStart: 22 * 60, QuietEnd: 7 * 60, TimeZone: "Europe/Berlin"}, *p)
	})

	t.Run("AdminOnly", func(t *testing.T) {
		for _, path := range []string{"/admin/notifications", "/admin/notifications/defaults"} {
			_, code := c.get(t, reviewer, path)
			require.Equal(t, http.StatusForbidden, code, path)
			_, code = c.get(t, admin, path)
			require.Equal(t, http.StatusOK, code, path)
		}
	})

	t.Run("Defaults", func(t *testing.T) {
		resp, _ := c.post(t, admin, "/admin/notifications/defaults", "/admin/notifications/defaults", url.Values{"role": {"approver"},
			"channel": {"email"}, "event": {"deadline.near"}, "time_zone": {"UTC"}})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		d, err := store.NoticeRoleDefaultList(ctx, c.Pool)
		require.NoError(t, err)
		require.Equal(t, []string{"deadline.near"}, d[vocab.RoleApprover].Events)
		resp, _ = c.post(t, admin, "/admin/notifications/defaults", "/admin/notifications/defaults", url.Values{"role": {"root"}})
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})

	t.Run("NoFailureSaysSo", func(t *testing.T) {
		doc, _ := c.get(t, admin, "/admin/notifications?failed=1")
		require.Equal(t, "No message failed.", strings.TrimSpace(doc.Find("[data-testid=no-messages]").Text()))
		require.Zero(t, doc.Find("[data-testid=deliveries]").Length(), "no empty table")
	})

	t.Run("Redeliver", func(t *testing.T) {
		sink.FailNext(100)
		adm, err := store.UserGetByEmail(ctx, c.Pool, "admin@example.com")
		require.NoError(t, err)
		var id int64
		require.NoError(t, c.Pool.QueryRow(ctx, `INSERT INTO notice_messages (user_id, channel, status, attempts, last_error)
			VALUES ($1, 'email', 'failed', 8, '451 try again later') RETURNING id`, adm.ID).Scan(&id))
		doc, _ := c.get(t, admin, "/admin/notifications?failed=1")
		require.Equal(t, "failed", doc.Find(fmt.Sprintf("[data-testid=message-%d] [data-testid=status]", id)).Text())
		sink.FailNext(0)
		resp, _ := c.post(t, admin, "/admin/notifications", fmt.Sprintf("/admin/notifications/%d/redeliver", id), url.Values{})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if m, _ := store.NoticeMessageGet(ctx, c.Pool, id); m != nil && m.Status == "sent" {
				break
			}
		}
		m, err := store.NoticeMessageGet(ctx, c.Pool, id)
		require.NoError(t, err)
		require.Equal(t, "sent", m.Status)
		doc, code := c.get(t, admin, fmt.Sprintf("/admin/notifications/%d", id))
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "sent", doc.Find("[data-testid=message] [data-testid=status]").Text())
		require.Contains(t, doc.Find("[data-testid=attempts] tbody").Text(), "accepted")
		_, code = c.get(t, admin, "/admin/notifications/999999")
		require.Equal(t, http.StatusNotFound, code)
		resp, _ = c.post(t, admin, "/admin/notifications", fmt.Sprintf("/admin/notifications/%d/redeliver", id), url.Values{})
		require.Equal(t, http.StatusNotFound, resp.StatusCode, "only a failed message")
		resp, _ = c.post(t, reviewer, "/", fmt.Sprintf("/admin/notifications/%d/redeliver", id), url.Values{})
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
	})
}

// TestNoticeEvents: each cause emits its event to the right people, and the
// fan-out delivers it only to them: escalation (escalate_to roles, and the
// deadline's passing to the deciders), a run that failed (admins), a
// decision (subscribers only), a batch ready (its deciders).
func TestNoticeEvents(t *testing.T) {
	t.Parallel()
	sink, err := mailsink.Start()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sink.Close() })
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	register := func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "doomed", func(ctx context.Context, in struct{}) (int, error) {
			return 0, workflow.Permanent(errors.New("the ledger is closed"))
		})
	}
	c := startConsoleWith(t, testapp.Options{SMTP: sink.Config(), Now: now, Register: register})
	ctx := context.Background()
	rev, err := store.UserGetByEmail(ctx, c.Pool, "reviewer@example.com")
	require.NoError(t, err)
	require.NoError(t, store.NoticePreferenceSet(ctx, c.Pool, rev.ID, store.NoticePrefs{Channels: []string{"email"},
		Events: []string{string(notice.DecisionRecorded)}, TimeZone: "UTC"}))

	// recipients waits for an event of kind and returns who its deliveries went to.
	recipients := func(kind notice.Kind, subject string) []string {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			rows, err := c.Pool.Query(ctx, `SELECT u.email FROM notice_deliveries d JOIN notice_events e ON e.id = d.event_id
				JOIN users u ON u.id = d.user_id WHERE e.kind = $1 AND coalesce(e.request_id::text, e.run_id::text, e.batch_id::text) = $2
				ORDER BY u.email`, string(kind), subject)
			require.NoError(t, err)
			got, err = pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			var fannedOut bool
			require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) > 0 AND count(*) FILTER (WHERE state <> 'completed') = 0
				FROM river_job WHERE kind = 'notice_fanout' AND (args->>'event_id')::bigint IN (SELECT id FROM notice_events WHERE kind = $1)`,
				string(kind)).Scan(&fannedOut))
			if fannedOut {
				return got
			}
		}
		t.Fatalf("no %s event for %s was fanned out", kind, subject)
		return nil
	}

	t.Run("Escalation", func(t *testing.T) {
		_, req := c.startRun(t, "support_triage", "T-esc", demo.Ticket{ID: "esc", Customer: "a@example.com", Subject: "Refund",
			Body: "broken", OrderTotal: 900}, "api@example.com")
		require.Equal(t, []vocab.Role{vocab.RoleAdmin}, req.EscalateTo)
		offset.Store(int64(req.Deadline.Sub(req.CreatedAt) + time.Minute))
		t.Cleanup(func() { offset.Store(0) })
		_, err := c.Engine.Expire(ctx, req.ID)
		require.NoError(t, err)
		require.Equal(t, []string{"admin@example.com"}, recipients(notice.Escalated, req.ID))
		require.Equal(t, []string{"admin@example.com", "approver2@example.com", "approver@example.com"}, recipients(notice.DeadlinePassed, req.ID))
	})

	t.Run("RunFailed", func(t *testing.T) {
		run, _, err := c.Engine.Start(ctx, workflow.StartParams{Workflow: "doomed", BusinessKey: "d-1", Input: []byte(`{}`), StartedBy: "api@example.com"})
		require.NoError(t, err)
		c.WaitRun(t, run.ID, vocab.RunFailed)
		require.Equal(t, []string{"admin@example.com"}, recipients(notice.RunFailed, run.ID))
	})

	t.Run("DecisionToSubscribers", func(t *testing.T) {
		_, req := c.startRun(t, "support_triage", "T-sub", demo.Ticket{ID: "sub", Customer: "a@example.com",
			Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
		hc := c.client(t, "approver@example.com")
		resp, _ := c.post(t, hc, "/requests/"+req.ID, "/requests/"+req.ID+"/decision", url.Values{"verdict": {"approve"},
			"payload_hash": {req.PayloadHash}})
		require.Less(t, resp.StatusCode, 400)
		require.Equal(t, []string{"reviewer@example.com"}, recipients(notice.DecisionRecorded, req.ID))
		// The reviewer subscribed to decisions only: the request itself was
		// announced to the others, not to them.
		require.NotContains(t, recipients(notice.RequestWaiting, req.ID), "reviewer@example.com")
	})

	t.Run("BatchReady", func(t *testing.T) {
		batchID, _ := readyBatch(t, c)
		// The reviewer's own preferences name decisions only.
		require.Equal(t, []string{"admin@example.com", "approver2@example.com", "approver@example.com"}, recipients(notice.BatchReady, batchID))

		// A batch decision is one event for subscribers, not one per item.
		items, err := store.BatchItems(ctx, c.Pool, batchID)
		require.NoError(t, err)
		refs := make([]workflow.ItemRef, len(items))
		for i, it := range items {
			refs[i] = workflow.ItemRef{ID: it.ID, PayloadHash: it.PayloadHash}
		}
		_, err = c.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: batchID, Action: "reject_all", Reason: "not now", Items: refs,
			Actor: workflow.Actor{Name: "approver@example.com", Roles: []vocab.Role{vocab.RoleApprover}}})
		require.NoError(t, err)
		require.Equal(t, []string{"reviewer@example.com"}, recipients(notice.DecisionRecorded, batchID))
		var perItem int
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM notice_events WHERE kind = 'decision.recorded' AND request_id = ANY($1)`,
			func() []string {
				var ids []string
				for _, it := range items {
					ids = append(ids, it.ID)
				}
				return ids
			}()).Scan(&perItem))
		require.Zero(t, perItem)
	})
}
