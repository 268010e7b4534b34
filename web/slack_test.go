package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/slack"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/vocab"
)

const slackSecret = "8f742231b10e8888abcd99yyyzzz85a5"

// slackCall is one Web API call the stand-in received.
type slackCall struct {
	Method string
	Form   url.Values     // form arguments (users.*)
	JSON   map[string]any // JSON arguments (chat.*)
}

// fakeSlack stands in for Slack's Web API: it records every call and
// answers as Slack would. users maps Slack user ids to their profile email
// (confirmed unless the id starts with "UNCONF"; in the bot's own team
// unless it starts with "UEXT").
type fakeSlack struct {
	*httptest.Server
	mu    sync.Mutex
	calls []slackCall
	users map[string]string
	ts    int
	// failUpdates is how many chat.update calls still fail (HTTP 500)
	// before Slack answers again.
	failUpdates int
	// goneUpdates is how many chat.update calls still answer that the
	// message is gone (message_not_found).
	goneUpdates int
}

func newFakeSlack(t *testing.T, users map[string]string) *fakeSlack {
	t.Helper()
	f := &fakeSlack{users: users}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer xoxb-test" {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "not_authed"})
			return
		}
		method := strings.TrimPrefix(r.URL.Path, "/api/")
		call := slackCall{Method: method}
		body, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			require.NoError(t, json.Unmarshal(body, &call.JSON))
		} else {
			call.Form, _ = url.ParseQuery(string(body))
		}
		f.mu.Lock()
		f.calls = append(f.calls, call)
		f.ts++
		ts := fmt.Sprintf("1700000000.%06d", f.ts)
		down := method == "chat.update" && f.failUpdates > 0
		if down {
			f.failUpdates--
		}
		gone := method == "chat.update" && !down && f.goneUpdates > 0
		if gone {
			f.goneUpdates--
		}
		f.mu.Unlock()
		if gone {
			_ = json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": "message_not_found"})
			return
		}
		if down {
			http.Error(w, "unavailable", http.StatusInternalServerError)
			return
		}
		answer := map[string]any{"ok": true}
		switch method {
		case "chat.postMessage":
			answer["channel"], answer["ts"] = "D"+fmt.Sprint(call.JSON["channel"]), ts
		case "users.lookupByEmail":
			answer["user"] = map[string]any{"id": "U-" + call.Form.Get("email")}
		case "auth.test":
			answer["team_id"], answer["user_id"] = "T_HOME", "U_BOT"
		case "users.info":
			id := call.Form.Get("user")
			email, ok := f.users[id]
			if !ok {
				answer = map[string]any{"ok": false, "error": "user_not_found"}
				break
			}
			team := "T_HOME"
			if strings.HasPrefix(id, "UEXT") {
				team = "T_PARTNER" // another organization's member, in a Slack Connect channel
			}
			answer["user"] = map[string]any{"id": id, "team_id": team, "is_email_confirmed": !strings.HasPrefix(id, "UNCONF"),
				"profile": map[string]any{"email": email}}
		}
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeSlack) callsOf(method string) []slackCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []slackCall
	for _, c := range f.calls {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// click posts a block_actions interaction as Slack would, signed at ts
// with secret.
func click(t *testing.T, addr, secret string, ts time.Time, slackUser, action, value string) *http.Response {
	t.Helper()
	resp, _ := interact(t, addr, secret, ts, map[string]any{"type": "block_actions", "user": map[string]any{"id": slackUser},
		"trigger_id": "TRIG-" + slackUser,
		"container":  map[string]any{"type": "message", "channel_id": "DCHAN", "message_ts": "1.1"},
		"actions":    []map[string]any{{"action_id": action, "value": value, "block_id": "b"}}})
	return resp
}

// submit posts the reason modal's view_submission as Slack would: the
// modal's private metadata (as views.open set it) and the reason typed.
func submit(t *testing.T, addr, secret string, ts time.Time, slackUser, meta, reason string) (*http.Response, string) {
	t.Helper()
	return interact(t, addr, secret, ts, map[string]any{"type": "view_submission", "user": map[string]any{"id": slackUser},
		"view": map[string]any{"id": "V1", "type": "modal", "callback_id": slack.ModalCallback, "private_metadata": meta,
			"state": map[string]any{"values": map[string]any{slack.ReasonBlock: map[string]any{
				slack.ReasonAction: map[string]any{"type": "plain_text_input", "value": reason}}}}}})
}

// interact posts an interaction payload, signed at ts with secret.
func interact(t *testing.T, addr, secret string, ts time.Time, payload map[string]any) (*http.Response, string) {
	t.Helper()
	raw, err := json.Marshal(payload)
	require.NoError(t, err)
	body := "payload=" + url.QueryEscape(string(raw))
	stamp := strconv.FormatInt(ts.Unix(), 10)
	req, err := http.NewRequest(http.MethodPost, addr+"/slack/interactions", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(slack.HeaderTimestamp, stamp)
	req.Header.Set(slack.HeaderSignature, slack.Sign(secret, stamp, []byte(body)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	answer, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	return resp, string(answer)
}

// counts is what a refused interaction must leave as it was.
func counts(t *testing.T, c *console, requestID string) (decisions, events int) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM decisions WHERE request_id = $1`, requestID).Scan(&decisions))
	require.NoError(t, c.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&events))
	return decisions, events
}

// TestSlack: a waiting request reaches the reviewer's Slack direct messages
// in Block Kit with buttons bound to its payload hash; a click, verified and
// mapped by confirmed email, decides through the engine, the run resumes,
// the audit names the channel, and every copy of the message is updated.
// Forged, stale, self-approving and mismatched clicks change nothing.
func TestSlack(t *testing.T) {
	t.Parallel()
	fake := newFakeSlack(t, map[string]string{"U_REV": "reviewer@example.com", "U_APP": "Approver@Example.com",
		"UNCONF": "admin@example.com", "U_STRANGER": "nobody@example.com",
		// Confirmed addresses that are not the reviewer's, though Unicode
		// lower-casing (Go's and PostgreSQL's lower()) makes them so.
		"U_DOTTED_I": "rev\u0130ewer@example.com", "U_KELVIN": "reviewer@example.\u212Aom",
		// The reviewer's address, confirmed by another organization.
		"UEXT_REV": "reviewer@example.com"})
	c := startConsoleWith(t, testapp.Options{Slack: config.Slack{BotToken: "xoxb-test", SigningSecret: slackSecret,
		APIURL: fake.URL + "/api"}, CallbackAllow: "127.0.0.1"})
	ctx := context.Background()
	rev, err := store.UserGetByEmail(ctx, c.Pool, "reviewer@example.com")
	require.NoError(t, err)
	require.NoError(t, store.NoticePreferenceSet(ctx, c.Pool, rev.ID, store.NoticePrefs{Channels: []string{"slack"},
		Events: []string{string(notice.RequestWaiting)}, TimeZone: "UTC"}))

	run, req := c.startRun(t, "support_triage", "T-slack", demo.Ticket{ID: "T-slack", Customer: "ada@example.com",
		Subject: "How do I export invoices? <!channel> <@U123>", Body: "How do I export invoices?"}, "api@example.com")
	require.Eventually(t, func() bool { return len(fake.callsOf("chat.postMessage")) == 1 }, 20*time.Second, 20*time.Millisecond)
	post := fake.callsOf("chat.postMessage")[0]
	require.Equal(t, "U-reviewer@example.com", post.JSON["channel"], "a direct message to the reviewer, found by address")
	blocks, _ := json.Marshal(post.JSON["blocks"])
	value := slack.ButtonValue(req.ID, req.PayloadHash)
	require.Contains(t, string(blocks), `"action_id":"approve"`)
	require.Contains(t, string(blocks), `"value":"`+value+`"`)
	require.Contains(t, string(blocks), "outbound-email")
	require.Contains(t, string(blocks), "/requests/"+req.ID)
	require.NotContains(t, string(blocks), "<!channel>", "model text cannot mention anyone")
	require.NotContains(t, string(blocks), "<@U123>")

	now := time.Now()
	t.Run("ForgedRefused", func(t *testing.T) {
		d0, e0 := counts(t, c, req.ID)
		resp := click(t, c.Addr, "not-the-secret-at-all", now, "U_REV", slack.ActionApprove, value)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		d1, e1 := counts(t, c, req.ID)
		require.Equal(t, d0, d1)
		require.Equal(t, e0, e1, "no audit event for a forged request")
		require.Empty(t, fake.callsOf("users.info"), "nothing is asked of Slack for it either")
	})
	t.Run("StaleRefused", func(t *testing.T) {
		d0, e0 := counts(t, c, req.ID)
		resp := click(t, c.Addr, slackSecret, now.Add(-6*time.Minute), "U_REV", slack.ActionApprove, value)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		d1, e1 := counts(t, c, req.ID)
		require.Equal(t, [2]int{d0, e0}, [2]int{d1, e1})
	})
	t.Run("UnconfirmedEmailRefused", func(t *testing.T) {
		resp := click(t, c.Addr, slackSecret, now, "UNCONF", slack.ActionApprove, value)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		d, _ := counts(t, c, req.ID)
		require.Zero(t, d)
	})
	t.Run("UnknownUserRefused", func(t *testing.T) {
		resp := click(t, c.Addr, slackSecret, now, "U_STRANGER", slack.ActionApprove, value)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		d, _ := counts(t, c, req.ID)
		require.Zero(t, d)
	})
	t.Run("LookalikeAddressRefused", func(t *testing.T) {
		for _, id := range []string{"U_DOTTED_I", "U_KELVIN"} {
			d0, e0 := counts(t, c, req.ID)
			resp := click(t, c.Addr, slackSecret, now, id, slack.ActionApprove, value)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			d1, e1 := counts(t, c, req.ID)
			require.Equal(t, [2]int{d0, e0}, [2]int{d1, e1}, "%s is not the reviewer", id)
			eph := fake.callsOf("chat.postEphemeral")
			require.Contains(t, eph[len(eph)-1].JSON["text"], "No active Countersign user", id)
		}
	})
	t.Run("OtherOrganizationRefused", func(t *testing.T) {
		d0, e0 := counts(t, c, req.ID)
		resp := click(t, c.Addr, slackSecret, now, "UEXT_REV", slack.ActionApprove, value)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		d1, e1 := counts(t, c, req.ID)
		require.Equal(t, [2]int{d0, e0}, [2]int{d1, e1}, "a Slack Connect member is not the reviewer")
		eph := fake.callsOf("chat.postEphemeral")
		require.Contains(t, eph[len(eph)-1].JSON["text"], "cannot tell who you are")
	})
	t.Run("PayloadHashMismatchRefused", func(t *testing.T) {
		resp := click(t, c.Addr, slackSecret, now, "U_REV", slack.ActionApprove, slack.ButtonValue(req.ID, strings.Repeat("0", 64)))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		d, _ := counts(t, c, req.ID)
		require.Zero(t, d)
	})
	t.Run("RejectOpensTheReasonModal", func(t *testing.T) {
		n := len(fake.callsOf("views.open"))
		resp := click(t, c.Addr, slackSecret, now, "U_REV", slack.ActionReject, value)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		d, _ := counts(t, c, req.ID)
		require.Zero(t, d, "a click on Reject decides nothing yet")
		opens := fake.callsOf("views.open")
		require.Len(t, opens, n+1)
		require.Equal(t, "TRIG-U_REV", opens[n].JSON["trigger_id"])
		st, ok := slack.ParseModalState(opens[n].JSON["view"].(map[string]any)["private_metadata"].(string))
		require.True(t, ok)
		require.Equal(t, slack.ModalState{RequestID: req.ID, PayloadHash: req.PayloadHash, Verdict: vocab.VerdictReject}, st)
	})
	t.Run("Approve", func(t *testing.T) {
		resp := click(t, c.Addr, slackSecret, now, "U_REV", slack.ActionApprove, value)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, vocab.RunCompleted, c.WaitRun(t, run.ID, vocab.RunCompleted).Status, "the run resumed")
		got, err := store.RequestGet(ctx, c.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, "reviewer@example.com", *got.DecidedBy)
		var channel string
		require.NoError(t, c.Pool.QueryRow(ctx, `SELECT details->>'channel' FROM audit_events WHERE subject_id = $1 AND kind = 'decision.recorded'`,
			req.ID).Scan(&channel))
		require.Equal(t, "slack", channel)

		// The decision's transaction queued the update of every copy.
		require.Eventually(t, func() bool { return len(fake.callsOf("chat.update")) == 1 }, 20*time.Second, 20*time.Millisecond)
		updates := fake.callsOf("chat.update")
		require.Equal(t, "DU-reviewer@example.com", updates[0].JSON["channel"])
		require.Equal(t, "1700000000.000002", updates[0].JSON["ts"])
		b, _ := json.Marshal(updates[0].JSON["blocks"])
		require.Contains(t, string(b), "Approved by reviewer@example.com in Slack")
		require.NotContains(t, string(b), `"action_id":"approve"`, "the buttons are gone")

		// A second click is told it was decided; nothing changes.
		d0, _ := counts(t, c, req.ID)
		click(t, c.Addr, slackSecret, now, "U_APP", slack.ActionApprove, value)
		d1, _ := counts(t, c, req.ID)
		require.Equal(t, d0, d1)
		eph := fake.callsOf("chat.postEphemeral")
		require.Contains(t, eph[len(eph)-1].JSON["text"], "already decided")
	})
	t.Run("SelfApprovalRefused", func(t *testing.T) {
		_, own := c.startRun(t, "support_triage", "T-self", demo.Ticket{ID: "T-self", Customer: "ada@example.com",
			Subject: "How do I export invoices?", Body: "How do I export invoices?"}, "reviewer@example.com")
		resp := click(t, c.Addr, slackSecret, now, "U_REV", slack.ActionApprove, slack.ButtonValue(own.ID, own.PayloadHash))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		d, _ := counts(t, c, own.ID)
		require.Zero(t, d)
		got, err := store.RequestGet(ctx, c.Pool, own.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RequestPending, got.Status)
	})
	t.Run("TooLarge", func(t *testing.T) {
		resp, err := http.Post(c.Addr+"/slack/interactions", "application/x-www-form-urlencoded", strings.NewReader(strings.Repeat("a", 70<<10)))
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	})
}
