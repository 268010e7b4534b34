package web_test

import (
	"bytes"
	"context"
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
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/email"
	"github.com/countersign/countersign/internal/notice/mailsink"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
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

// TestNoticeMailEscapes: model text reaches the HTML part escaped and with
// invisible characters written out, as the console shows it.
func TestNoticeMailEscapes(t *testing.T) {
	t.Parallel()
	it := notice.Item{Kind: notice.RequestWaiting, Title: notice.RequestWaiting.Label(), ActionKind: "email.send",
		Summary: "Pay <script>alert(1)</script> \u202Eevil", Risk: "high", Rule: "r", Link: "https://cs.example.com/requests/x"}
	subject, text, html, err := email.Render(notice.Message{Items: []notice.Item{it}})
	require.NoError(t, err)
	require.NotContains(t, html, "<script>")
	require.Contains(t, html, "&lt;script&gt;")
	require.Contains(t, html, "⟨U+202E⟩")
	require.Contains(t, text, "⟨U+202E⟩")
	require.NotContains(t, text, "\u202E")
	require.NotContains(t, subject, "\u202E")
}

// TestLoginNext: sign-in returns to the page asked for, and only to a path
// on this site.
func TestLoginNext(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"/requests/abc?x=1":     "/requests/abc?x=1",
		"//evil.example/":       "",
		"/\\evil.example":       "",
		"https://evil.example/": "",
		"/%0d%0aSet-Cookie":     "/%0d%0aSet-Cookie", // still a path; the encoding stays in it
		"/a\r\nb":               "",
		"javascript:alert(1)":   "",
		"":                      "",
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
	require.Equal(t, 1, events(notice.DecisionRecorded))
}
