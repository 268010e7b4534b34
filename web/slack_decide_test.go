package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/slack"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// slackTestConfig is the Slack configuration of a process talking to fake.
func slackTestConfig(fake *fakeSlack) config.Slack {
	return config.Slack{BotToken: "xoxb-test", SigningSecret: slackSecret, APIURL: fake.URL + "/api"}
}

// preferSlack has the users hear of waiting requests in Slack.
func preferSlack(t *testing.T, pool *pgxpool.Pool, emails ...string) {
	t.Helper()
	ctx := context.Background()
	for _, email := range emails {
		u, err := store.UserGetByEmail(ctx, pool, email)
		require.NoError(t, err)
		require.NoError(t, store.NoticePreferenceSet(ctx, pool, u.ID, store.NoticePrefs{Channels: []string{"slack"},
			Events: []string{string(notice.RequestWaiting)}, TimeZone: "UTC"}))
	}
}

// copiesUpdated waits until chat.update was called n times and returns the
// calls, keyed by the copy (channel and ts) they updated.
func copiesUpdated(t *testing.T, fake *fakeSlack, n int) map[string]slackCall {
	t.Helper()
	require.Eventually(t, func() bool { return len(fake.callsOf("chat.update")) >= n }, 30*time.Second, 20*time.Millisecond)
	out := map[string]slackCall{}
	for _, u := range fake.callsOf("chat.update") {
		out[u.JSON["channel"].(string)+"/"+u.JSON["ts"].(string)] = u
	}
	return out
}

// copiesPosted returns the copies (channel/ts) that carry request id's buttons.
func copiesPosted(t *testing.T, pool *pgxpool.Pool, requestID string) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT channel || '/' || ts FROM slack_messages WHERE $1::uuid = ANY (request_ids) ORDER BY 1`, requestID)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

func blocksOf(c slackCall) string {
	b, _ := json.Marshal(c.JSON["blocks"])
	return string(b)
}

// TestSlackReasonModal: Reject and Request changes open a modal asking for
// the reason; its submission, verified like a click, decides through the
// engine with the payload hash the button carried, and every copy is then
// updated to say who decided. A forged or stale submission is refused with
// 401 and changes nothing; an empty reason, a changed action, an unknown
// user and a second decision are refused in the modal's errors.
func TestSlackReasonModal(t *testing.T) {
	t.Parallel()
	fake := newFakeSlack(t, map[string]string{"U_REV": "reviewer@example.com", "U_APP": "approver@example.com",
		"U_STRANGER": "nobody@example.com"})
	c := startConsoleWith(t, testapp.Options{Slack: slackTestConfig(fake), CallbackAllow: "127.0.0.1"})
	ctx := context.Background()
	preferSlack(t, c.Pool, "reviewer@example.com")

	_, req := c.startRun(t, "support_triage", "T-modal", demo.Ticket{ID: "T-modal", Customer: "ada@example.com",
		Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
	require.Eventually(t, func() bool { return len(fake.callsOf("chat.postMessage")) == 1 }, 20*time.Second, 20*time.Millisecond)

	resp := click(t, c.Addr, slackSecret, time.Now(), "U_REV", slack.ActionReject, slack.ButtonValue(req.ID, req.PayloadHash))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	opens := fake.callsOf("views.open")
	require.Len(t, opens, 1)
	view := opens[0].JSON["view"].(map[string]any)
	require.Equal(t, slack.ModalCallback, view["callback_id"])
	meta := view["private_metadata"].(string)
	raw, _ := json.Marshal(view)
	require.Contains(t, string(raw), `"max_length":3000`, "the reason is bounded in Slack too")

	unchanged := func(t *testing.T) {
		t.Helper()
		d, _ := counts(t, c, req.ID)
		got, err := store.RequestGet(ctx, c.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestPending, got.Status)
		require.Zero(t, d)
		var n int
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE subject_id = $1 AND kind = 'decision.recorded'`, req.ID).Scan(&n))
		require.Zero(t, n)
		require.Empty(t, fake.callsOf("chat.update"))
	}
	errorsOf := func(t *testing.T, body string) string {
		t.Helper()
		var answer struct {
			ResponseAction string            `json:"response_action"`
			Errors         map[string]string `json:"errors"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &answer), body)
		require.Equal(t, "errors", answer.ResponseAction)
		return answer.Errors[slack.ReasonBlock]
	}

	t.Run("ForgedRefused", func(t *testing.T) {
		_, e0 := counts(t, c, req.ID)
		info := len(fake.callsOf("users.info"))
		resp, _ := submit(t, c.Addr, "not-the-secret-at-all", time.Now(), "U_REV", meta, "too risky")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		unchanged(t)
		_, e1 := counts(t, c, req.ID)
		require.Equal(t, e0, e1, "no audit event for a forged submission")
		require.Len(t, fake.callsOf("users.info"), info, "nothing is asked of Slack for it")
	})
	t.Run("StaleRefused", func(t *testing.T) {
		_, e0 := counts(t, c, req.ID)
		resp, _ := submit(t, c.Addr, slackSecret, time.Now().Add(-6*time.Minute), "U_REV", meta, "too risky")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		unchanged(t)
		_, e1 := counts(t, c, req.ID)
		require.Equal(t, e0, e1)
	})
	t.Run("EmptyReasonRefused", func(t *testing.T) {
		resp, body := submit(t, c.Addr, slackSecret, time.Now(), "U_REV", meta, "   ")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Contains(t, errorsOf(t, body), "needs a reason")
		unchanged(t)
	})
	t.Run("TooLongRefused", func(t *testing.T) {
		_, body := submit(t, c.Addr, slackSecret, time.Now(), "U_REV", meta, strings.Repeat("x", slack.MaxReason+1))
		require.Contains(t, errorsOf(t, body), "3000")
		unchanged(t)
	})
	t.Run("NulInReasonRefused", func(t *testing.T) {
		// JSON can carry a NUL (\u0000) that the form's check never sees;
		// PostgreSQL cannot store it in text.
		resp, body := submit(t, c.Addr, slackSecret, time.Now(), "U_REV", meta, "too\x00risky")
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Contains(t, errorsOf(t, body), "cannot be stored")
		unchanged(t)
	})
	t.Run("ChangedActionRefused", func(t *testing.T) {
		other, _ := json.Marshal(slack.ModalState{RequestID: req.ID, PayloadHash: strings.Repeat("0", 64), Verdict: vocab.VerdictReject})
		_, body := submit(t, c.Addr, slackSecret, time.Now(), "U_REV", string(other), "too risky")
		require.Contains(t, errorsOf(t, body), "The action changed")
		unchanged(t)
	})
	t.Run("UnknownUserRefused", func(t *testing.T) {
		_, body := submit(t, c.Addr, slackSecret, time.Now(), "U_STRANGER", meta, "too risky")
		require.Contains(t, errorsOf(t, body), "No active Countersign user has the address nobody@example.com")
		unchanged(t)
	})
	t.Run("BadMetadata", func(t *testing.T) {
		resp, _ := submit(t, c.Addr, slackSecret, time.Now(), "U_REV", `{"r":"x","h":"y","v":"approve"}`, "too risky")
		require.Equal(t, http.StatusBadRequest, resp.StatusCode)
		unchanged(t)
	})
	t.Run("Rejects", func(t *testing.T) {
		resp, body := submit(t, c.Addr, slackSecret, time.Now(), "U_REV", meta, "  The customer asked for something else.  ")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Empty(t, body, "an empty answer closes the modal")
		got, err := store.RequestGet(ctx, c.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestRejected, got.Status)
		require.Equal(t, "reviewer@example.com", *got.DecidedBy)
		var reason, verdict, channel string
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT reason, verdict FROM decisions WHERE request_id = $1`, req.ID).Scan(&reason, &verdict))
		require.Equal(t, "The customer asked for something else.", reason)
		require.Equal(t, string(vocab.VerdictReject), verdict)
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT details->>'channel' FROM audit_events WHERE subject_id = $1 AND kind = 'decision.recorded'`,
			req.ID).Scan(&channel))
		require.Equal(t, "slack", channel)

		updated := copiesUpdated(t, fake, 1)
		require.Len(t, updated, 1)
		b := blocksOf(updated["DU-reviewer@example.com/1700000000.000002"])
		require.Contains(t, b, "Rejected by reviewer@example.com in Slack at")
		require.NotContains(t, b, `"action_id":"reject"`, "the buttons are gone")
	})
	t.Run("SecondDecisionRefused", func(t *testing.T) {
		_, body := submit(t, c.Addr, slackSecret, time.Now(), "U_APP", meta, "me too")
		require.Contains(t, errorsOf(t, body), "already decided")
		var n int
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE request_id = $1`, req.ID).Scan(&n))
		require.Equal(t, 1, n)
		// A click on Reject of a decided request opens no modal, and says so.
		opened := len(fake.callsOf("views.open"))
		click(t, c.Addr, slackSecret, time.Now(), "U_APP", slack.ActionReject, slack.ButtonValue(req.ID, req.PayloadHash))
		require.Len(t, fake.callsOf("views.open"), opened)
		eph := fake.callsOf("chat.postEphemeral")
		require.NotEmpty(t, eph)
		require.Contains(t, eph[len(eph)-1].JSON["text"], "no longer waits: it is rejected")
		require.Equal(t, "U_APP", eph[len(eph)-1].JSON["user"])
	})
	t.Run("RequestChanges", func(t *testing.T) {
		_, other := c.startRun(t, "support_triage", "T-changes", demo.Ticket{ID: "T-changes", Customer: "ada@example.com",
			Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
		resp := click(t, c.Addr, slackSecret, time.Now(), "U_REV", slack.ActionRequestChanges, slack.ButtonValue(other.ID, other.PayloadHash))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		opens := fake.callsOf("views.open")
		view := opens[len(opens)-1].JSON["view"].(map[string]any)
		st, ok := slack.ParseModalState(view["private_metadata"].(string))
		require.True(t, ok)
		require.Equal(t, vocab.VerdictRequestChanges, st.Verdict)
		_, body := submit(t, c.Addr, slackSecret, time.Now(), "U_REV", view["private_metadata"].(string), "")
		require.Contains(t, errorsOf(t, body), "what should change")
		resp, _ = submit(t, c.Addr, slackSecret, time.Now(), "U_REV", view["private_metadata"].(string), "Link the invoice page.")
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var reason, verdict string
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT reason, verdict FROM decisions WHERE request_id = $1`, other.ID).Scan(&reason, &verdict))
		require.Equal(t, "Link the invoice page.", reason)
		require.Equal(t, string(vocab.VerdictRequestChanges), verdict)
	})
}

// TestSlackCopiesFollowEveryDecision: a decision made outside Slack — on
// the console's review page, or by the policy when the deadline passes —
// updates every Slack copy of the request, once each, to say who decided
// and how (or that it expired).
func TestSlackCopiesFollowEveryDecision(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	fake := newFakeSlack(t, nil)
	c := startConsoleWith(t, testapp.Options{Slack: slackTestConfig(fake), CallbackAllow: "127.0.0.1", Now: now,
		NoticeWindow: 200 * time.Millisecond})
	ctx := context.Background()
	preferSlack(t, c.Pool, "reviewer@example.com", "approver@example.com")

	t.Run("Console", func(t *testing.T) {
		_, req := c.startRun(t, "support_triage", "T-console", demo.Ticket{ID: "T-console", Customer: "ada@example.com",
			Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
		require.Eventually(t, func() bool { return len(copiesPosted(t, c.Pool, req.ID)) == 2 }, 20*time.Second, 20*time.Millisecond)
		require.Empty(t, fake.callsOf("chat.update"))

		hc := c.client(t, "approver@example.com")
		page := "/requests/" + req.ID
		resp, _ := c.post(t, hc, page, page+"/decision", url.Values{"verdict": {"approve"}, "payload_hash": {req.PayloadHash}})
		require.Less(t, resp.StatusCode, 400)

		updated := copiesUpdated(t, fake, 2)
		require.ElementsMatch(t, copiesPosted(t, c.Pool, req.ID), copyNames(updated), "every copy, the decider's and the others'")
		for _, u := range updated {
			b := blocksOf(u)
			require.Contains(t, b, "Approved by approver@example.com at ")
			require.NotContains(t, b, "in Slack")
			require.NotContains(t, b, `"action_id":"approve"`)
		}
		time.Sleep(time.Second)
		require.Len(t, fake.callsOf("chat.update"), 2, "once per copy")
		var pending int
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM slack_updates WHERE done_at IS NULL`).Scan(&pending))
		require.Zero(t, pending)
	})
	t.Run("API", func(t *testing.T) {
		before := len(fake.callsOf("chat.update"))
		_, req := c.startRun(t, "support_triage", "T-api", demo.Ticket{ID: "T-api", Customer: "ada@example.com",
			Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
		require.Equal(t, "outbound-email", req.Rule)
		require.Eventually(t, func() bool { return len(copiesPosted(t, c.Pool, req.ID)) == 2 }, 20*time.Second, 20*time.Millisecond)
		require.Equal(t, 200, c.api(t, "reviewer@example.com").do("POST", "/requests/"+req.ID+"/decision",
			map[string]any{"verdict": "reject", "reason": "not now", "payload_hash": req.PayloadHash}, nil))
		updated := copiesUpdated(t, fake, before+2)
		for _, copy := range copiesPosted(t, c.Pool, req.ID) {
			require.Contains(t, blocksOf(updated[copy]), "Rejected by reviewer@example.com at ")
		}
	})
	t.Run("Expired", func(t *testing.T) {
		before := len(fake.callsOf("chat.update"))
		_, req := c.startRun(t, "support_triage", "T-expire", demo.Ticket{ID: "T-expire", Customer: "ada@example.com",
			Subject: "Refund please", Body: "My order arrived broken, I want a refund.", OrderTotal: 120}, "api@example.com")
		require.Equal(t, "refund", req.Rule)
		require.Equal(t, "reject", req.OnTimeout)
		require.Eventually(t, func() bool { return len(copiesPosted(t, c.Pool, req.ID)) == 2 }, 20*time.Second, 20*time.Millisecond)

		offset.Store(int64(time.Until(*req.Deadline) + time.Minute))
		_, err := c.Engine.Expire(ctx, req.ID)
		require.NoError(t, err)
		updated := copiesUpdated(t, fake, before+2)
		for _, copy := range copiesPosted(t, c.Pool, req.ID) {
			require.Contains(t, blocksOf(updated[copy]), "Expired at ")
			require.Contains(t, blocksOf(updated[copy]), "rejected by policy:refund")
		}
	})
}

func copyNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSlackCopiesAfterCrash: a decision committed by a process that died
// before updating Slack (here: one without workers, stopped after the
// decision) is shown in every copy by the next process, exactly once per
// copy; a copy Slack fails to update is tried again until it is.
func TestSlackCopiesAfterCrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, dbURL := testdb.Pool(t)
	fake := newFakeSlack(t, nil)
	opts := testapp.Options{Slack: slackTestConfig(fake), CallbackAllow: "127.0.0.1"}
	var req *store.Request

	t.Run("Announce", func(t *testing.T) {
		a := testapp.StartOn(t, pool, dbURL, opts)
		_, err := policystore.Apply(ctx, pool, policy.Example, "setup")
		require.NoError(t, err)
		a.App.Policies.Invalidate()
		for _, email := range []string{"reviewer@example.com", "approver@example.com"} {
			_, err := account.Create(ctx, pool, email, strings.Split(email, "@")[0], users[email], password, "setup")
			require.NoError(t, err)
		}
		preferSlack(t, pool, "reviewer@example.com", "approver@example.com")
		raw, _ := json.Marshal(demo.Ticket{ID: "T-crash", Customer: "ada@example.com", Subject: "How do I export invoices?", Body: "How do I export invoices?"})
		run, _, err := a.Engine.Start(ctx, workflow.StartParams{Workflow: "support_triage", BusinessKey: "T-crash", Input: raw, StartedBy: "api@example.com"})
		require.NoError(t, err)
		a.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		req = a.PendingRequest(t, run.ID)
		require.Eventually(t, func() bool { return len(copiesPosted(t, pool, req.ID)) == 2 }, 20*time.Second, 20*time.Millisecond)
	}) // the process stops here

	t.Run("DecideAndDie", func(t *testing.T) {
		noWorker := opts
		noWorker.NoWorker = true
		b := testapp.StartOn(t, pool, dbURL, noWorker)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: workflow.Actor{Name: "approver@example.com",
			Roles: []vocab.Role{vocab.RoleApprover}}, Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
		require.NoError(t, err)
	}) // committed, and the process is gone before any update

	var pending, jobs int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM slack_updates WHERE done_at IS NULL AND request_id = $1`, req.ID).Scan(&pending))
	require.Equal(t, 2, pending, "the decision recorded what every copy is owed")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'chat_update' AND state = 'available'`).Scan(&jobs))
	require.Equal(t, 1, jobs)
	require.Empty(t, fake.callsOf("chat.update"))

	// The next process finds the job; Slack fails once, and the copy is
	// tried again (River's backoff: a couple of seconds).
	fake.mu.Lock()
	fake.failUpdates = 1
	fake.mu.Unlock()
	c := testapp.StartOn(t, pool, dbURL, opts)
	require.Eventually(t, func() bool {
		var done int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM slack_updates WHERE done_at IS NOT NULL AND request_id = $1`, req.ID).Scan(&done))
		return done == 2
	}, 60*time.Second, 50*time.Millisecond, "every copy updated after recovery")
	calls := fake.callsOf("chat.update")
	require.Len(t, calls, 3, "two copies, one of them tried twice")
	var attempts int
	require.NoError(t, pool.QueryRow(ctx, `SELECT sum(attempts) FROM slack_updates WHERE request_id = $1`, req.ID).Scan(&attempts))
	require.Equal(t, 3, attempts)
	updated := copiesUpdated(t, fake, 3)
	require.ElementsMatch(t, copiesPosted(t, pool, req.ID), copyNames(updated))
	for _, u := range updated {
		require.Contains(t, blocksOf(u), "Approved by approver@example.com at ")
	}

	// Running the job again (a retry, another crash) updates nothing twice.
	require.NoError(t, c.App.Slack.UpdateCopies(ctx, req.ID))
	require.Len(t, fake.callsOf("chat.update"), 3, "exactly once per copy")
}

// TestSlackCopyPostedAfterDecision: a message built while its request
// waited but recorded after the request was decided (the decision's
// transaction found no copy to update) catches up: it is updated to show
// the decision. A copy of a request that still waits is left alone.
func TestSlackCopyPostedAfterDecision(t *testing.T) {
	t.Parallel()
	fake := newFakeSlack(t, nil)
	c := startConsoleWith(t, testapp.Options{Slack: slackTestConfig(fake), CallbackAllow: "127.0.0.1"})
	ctx := context.Background()
	_, decided := c.startRun(t, "support_triage", "T-late", demo.Ticket{ID: "T-late", Customer: "ada@example.com",
		Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
	_, waiting := c.startRun(t, "support_triage", "T-wait", demo.Ticket{ID: "T-wait", Customer: "ada@example.com",
		Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
	require.Empty(t, fake.callsOf("chat.postMessage"), "nobody prefers Slack: nothing posted so far")
	require.Equal(t, 200, c.api(t, "approver@example.com").do("POST", "/requests/"+decided.ID+"/decision",
		map[string]any{"verdict": "approve", "payload_hash": decided.PayloadHash}, nil))

	// The message was built before the decision and is posted after it.
	rev, err := store.UserGetByEmail(ctx, c.Pool, "reviewer@example.com")
	require.NoError(t, err)
	item := func(r *store.Request) notice.Item {
		return notice.Item{Kind: notice.RequestWaiting, Title: "A request waits for you", ActionKind: r.ActionKind, Summary: r.Summary,
			RequestID: r.ID, PayloadHash: r.PayloadHash, Pending: true, Link: c.Addr + "/requests/" + r.ID}
	}
	require.NoError(t, c.App.Slack.Send(ctx, notice.Message{To: notice.Recipient{UserID: rev.ID, Email: rev.Email},
		Items: []notice.Item{item(decided), item(waiting)}}))
	posts := fake.callsOf("chat.postMessage")
	require.Len(t, posts, 1)
	require.Contains(t, blocksOf(posts[0]), slack.ButtonValue(decided.ID, decided.PayloadHash), "built while it waited")

	updated := copiesUpdated(t, fake, 1)
	require.Len(t, updated, 1)
	for _, u := range updated {
		b := blocksOf(u)
		require.Contains(t, b, "Approved by approver@example.com at ")
		require.NotContains(t, b, slack.ButtonValue(decided.ID, decided.PayloadHash), "the decided request's buttons are gone")
		require.Contains(t, b, slack.ButtonValue(waiting.ID, waiting.PayloadHash), "the waiting one's stay")
	}
	time.Sleep(time.Second)
	require.Len(t, fake.callsOf("chat.update"), 1)
	var rows int
	require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM slack_updates WHERE request_id = $1`, waiting.ID).Scan(&rows))
	require.Zero(t, rows)
}

// TestSlackCopyGone: a copy Slack says no longer exists is given up at
// once, with the error recorded, while the other copies are updated; the
// job is not retried for it.
func TestSlackCopyGone(t *testing.T) {
	t.Parallel()
	fake := newFakeSlack(t, nil)
	c := startConsoleWith(t, testapp.Options{Slack: slackTestConfig(fake), CallbackAllow: "127.0.0.1"})
	ctx := context.Background()
	preferSlack(t, c.Pool, "reviewer@example.com", "approver@example.com")
	_, req := c.startRun(t, "support_triage", "T-gone", demo.Ticket{ID: "T-gone", Customer: "ada@example.com",
		Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "api@example.com")
	require.Eventually(t, func() bool { return len(copiesPosted(t, c.Pool, req.ID)) == 2 }, 20*time.Second, 20*time.Millisecond)
	fake.mu.Lock()
	fake.goneUpdates = 1
	fake.mu.Unlock()
	require.Equal(t, 200, c.api(t, "approver@example.com").do("POST", "/requests/"+req.ID+"/decision",
		map[string]any{"verdict": "approve", "payload_hash": req.PayloadHash}, nil))

	require.Eventually(t, func() bool {
		var done int
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM slack_updates WHERE done_at IS NOT NULL AND request_id = $1`, req.ID).Scan(&done))
		return done == 2
	}, 30*time.Second, 20*time.Millisecond)
	var failed []string
	rows, err := c.Pool.Query(ctx, `SELECT last_error FROM slack_updates WHERE request_id = $1 AND last_error <> ''`, req.ID)
	require.NoError(t, err)
	for rows.Next() {
		var e string
		require.NoError(t, rows.Scan(&e))
		failed = append(failed, e)
	}
	require.NoError(t, rows.Err())
	require.Len(t, failed, 1)
	require.Contains(t, failed[0], "message_not_found")
	time.Sleep(3 * time.Second) // longer than the first retry's backoff
	require.Len(t, fake.callsOf("chat.update"), 2, "the gone copy is not tried again")
	var state string
	require.NoError(t, c.Pool.QueryRow(ctx, `SELECT state FROM river_job WHERE kind = 'chat_update' AND args->>'request_id' = $1`, req.ID).Scan(&state))
	require.Equal(t, "completed", state)
}
