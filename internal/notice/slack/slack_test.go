package slack_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/slack"
	"github.com/countersign/countersign/vocab"
)

// Slack's published example (api.slack.com, "Verifying requests from Slack").
const (
	exampleSecret    = "8f742231b10e8888abcd99yyyzzz85a5"
	exampleTimestamp = "1531420618"
	exampleBody      = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	exampleSignature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	at := time.Unix(1531420618, 0)
	t.Run("PublishedExample", func(t *testing.T) {
		require.Equal(t, exampleSignature, slack.Sign(exampleSecret, exampleTimestamp, []byte(exampleBody)))
		require.NoError(t, slack.Verify(exampleSecret, exampleTimestamp, exampleSignature, []byte(exampleBody), at.Add(4*time.Minute)))
	})
	for name, c := range map[string]struct {
		secret, ts, sig, body string
		now                   time.Time
	}{
		"WrongSecret":     {"another-secret-0123456789", exampleTimestamp, exampleSignature, exampleBody, at},
		"BodyChanged":     {exampleSecret, exampleTimestamp, exampleSignature, exampleBody + "&x=1", at},
		"TimestampMoved":  {exampleSecret, "1531420619", exampleSignature, exampleBody, at},
		"Stale":           {exampleSecret, exampleTimestamp, exampleSignature, exampleBody, at.Add(5*time.Minute + time.Second)},
		"FromTheFuture":   {exampleSecret, exampleTimestamp, exampleSignature, exampleBody, at.Add(-6 * time.Minute)},
		"NoSignature":     {exampleSecret, exampleTimestamp, "", exampleBody, at},
		"OtherVersion":    {exampleSecret, exampleTimestamp, "v1=" + exampleSignature[3:], exampleBody, at},
		"NoTimestamp":     {exampleSecret, "", exampleSignature, exampleBody, at},
		"BadTimestamp":    {exampleSecret, "15314x0618", exampleSignature, exampleBody, at},
		"NoSecretAtAll":   {"", exampleTimestamp, exampleSignature, exampleBody, at},
		"UppercaseDigest": {exampleSecret, exampleTimestamp, strings.ToUpper(exampleSignature), exampleBody, at},
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, slack.Verify(c.secret, c.ts, c.sig, []byte(c.body), c.now), slack.ErrBadSignature)
		})
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"a & b":                    "a &amp; b",
		"<!channel> hi <@U123>":    "&lt;!channel&gt; hi &lt;@U123&gt;",
		"<https://evil.example|x>": "&lt;https://evil.example|x&gt;",
		"pay\u202Eevil":            "pay⟨U+202E⟩evil",
		"zero\u200Bwidth":          "zero⟨U+200B⟩width",
	} {
		require.Equal(t, want, slack.Escape(in), in)
	}
}

func TestBlocks(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	it := notice.Item{Kind: notice.RequestWaiting, Title: "A request waits for you", ActionKind: "payment.refund", Target: "<@U1>",
		Summary: "Refund *everything* <!here>", Risk: "high", Rule: "big-refund", Deadline: &deadline,
		Link: "https://cs.example.com/requests/r1", RequestID: "r1", PayloadHash: "h1", Pending: true}

	t.Run("Interactive", func(t *testing.T) {
		blocks, reqs := slack.Blocks(notice.Message{Items: []notice.Item{it}}, true, "https://cs.example.com")
		require.Equal(t, []string{"r1"}, reqs)
		var text string
		var actions []slack.Element
		for _, b := range blocks {
			if b.Text != nil {
				text += b.Text.Text
			}
			if b.Type == "actions" {
				actions = b.Elements
			}
		}
		for _, want := range []string{"*Risk:* high", "*Rule:* big-refund", "*Deadline:* 2026-11-22 10:00 UTC", "&lt;!here&gt;", "on &lt;@U1&gt;"} {
			require.Contains(t, text, want)
		}
		require.Len(t, actions, 4)
		require.Equal(t, "https://cs.example.com/requests/r1", actions[0].URL)
		require.Equal(t, slack.ActionApprove, actions[1].ActionID)
		require.Equal(t, "r1|h1", actions[1].Value)
		require.Equal(t, slack.ActionReject, actions[2].ActionID)
		require.Equal(t, slack.ActionRequestChanges, actions[3].ActionID, "every verdict that needs a reason has its button")
		require.Equal(t, "r1|h1", actions[3].Value)
	})
	t.Run("NoButtonsWithoutInteractivity", func(t *testing.T) {
		blocks, reqs := slack.Blocks(notice.Message{Items: []notice.Item{it}}, false, "https://cs.example.com")
		require.Empty(t, reqs)
		for _, b := range blocks {
			for _, e := range b.Elements {
				require.Empty(t, e.Value)
			}
		}
	})
	t.Run("NoButtonsOnceDecided", func(t *testing.T) {
		decided := it
		decided.Pending = false
		_, reqs := slack.Blocks(notice.Message{Items: []notice.Item{decided}}, true, "https://cs.example.com")
		require.Empty(t, reqs)
	})
	t.Run("DigestIsBounded", func(t *testing.T) {
		items := make([]notice.Item, 30)
		for i := range items {
			items[i] = it
		}
		blocks, reqs := slack.Blocks(notice.Message{Items: items}, true, "https://cs.example.com")
		require.Len(t, reqs, 10)
		require.LessOrEqual(t, len(blocks), 50, "Slack's limit")
	})
}

func TestButtonValue(t *testing.T) {
	t.Parallel()
	id, hash, ok := slack.ParseButtonValue(slack.ButtonValue("r", "h"))
	require.True(t, ok)
	require.Equal(t, [2]string{"r", "h"}, [2]string{id, hash})
	for _, v := range []string{"", "r", "|h", "r|", strings.Repeat("x", 400) + "|h"} {
		_, _, ok := slack.ParseButtonValue(v)
		require.False(t, ok, v)
	}
}

// TestReasonModal: the modal carries the request, the hash the button
// carried and the verdict in its private metadata, escapes the action it
// shows, and bounds the reason; anything else in the metadata is refused.
func TestReasonModal(t *testing.T) {
	st := slack.ModalState{RequestID: "r1", PayloadHash: "h1", Verdict: vocab.VerdictReject}
	view := slack.ReasonModal(st, "email.send: hi <!channel>")
	raw, err := json.Marshal(view)
	require.NoError(t, err)
	shown := view["blocks"].([]any)[0].(slack.Block).Text.Text
	require.Equal(t, "email.send: hi &lt;!channel&gt;", shown, "model text cannot mention anyone")
	require.Contains(t, string(raw), `"max_length":3000`)
	back, ok := slack.ParseModalState(view["private_metadata"].(string))
	require.True(t, ok)
	require.Equal(t, st, back)

	t.Run("StateRefused", func(t *testing.T) {
		for _, meta := range []string{"", "{}", `{"r":"r1","h":"h1","v":"approve"}`, `{"r":"r1","v":"reject"}`, "not json"} {
			_, ok := slack.ParseModalState(meta)
			require.False(t, ok, meta)
		}
	})
	t.Run("Reason", func(t *testing.T) {
		got, problem := slack.CheckReason(vocab.VerdictReject, "  too risky \n")
		require.Empty(t, problem)
		require.Equal(t, "too risky", got)
		_, problem = slack.CheckReason(vocab.VerdictReject, "   ")
		require.Contains(t, problem, "needs a reason")
		_, problem = slack.CheckReason(vocab.VerdictRequestChanges, "")
		require.Contains(t, problem, "what should change")
		_, problem = slack.CheckReason(vocab.VerdictReject, strings.Repeat("é", slack.MaxReason+1))
		require.Contains(t, problem, "3000")
		_, problem = slack.CheckReason(vocab.VerdictReject, strings.Repeat("é", slack.MaxReason))
		require.Empty(t, problem)
	})
}

// TestSameAddress: addresses match up to ASCII case, and no Unicode letter
// stands for an ASCII one.
func TestSameAddress(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{"reviewer@example.com", "reviewer@example.com", true},
		{"Reviewer@Example.COM", "reviewer@example.com", true},
		{"rev\u0130ewer@example.com", "reviewer@example.com", false}, // İ lower-cases to i
		{"reviewer@example.\u212Aom", "reviewer@example.kom", false}, // Kelvin sign lower-cases to k
		{"reviewer@example.com ", "reviewer@example.com", false},
		{"r\u00e9viewer@example.com", "R\u00c9viewer@example.com", false}, // only ASCII folds
		{"r\u00e9viewer@example.com", "r\u00e9viewer@example.com", true},
	} {
		require.Equal(t, c.same, slack.SameAddress(c.a, c.b), "%q %q", c.a, c.b)
	}
}

// TestWebhookErrorHidesURL: an incoming webhook's URL is its secret (anyone
// holding it posts to the channel); a failed send's error, which is logged,
// stored as the message's last error and shown in the console, must not
// carry it.
func TestWebhookErrorHidesURL(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now: the connection is refused
	const secret = "T0SECRET/B0SECRET/XoXoSeCrEtPaRt"
	c := slack.New(config.Slack{WebhookURL: "http://" + addr + "/services/" + secret}, &http.Client{Timeout: 5 * time.Second}, nil, "", nil)
	err = c.Send(context.Background(), notice.Message{Items: []notice.Item{{Kind: notice.RequestWaiting, Title: "A request waits"}}})
	require.Error(t, err)
	require.ErrorContains(t, err, "slack webhook")
	require.NotContains(t, err.Error(), "SECRET")
	require.NotContains(t, err.Error(), "SeCrEt")
}

// TestVerifiedEmailTeam: a Slack user's confirmed address is trusted only
// for a member of the bot's own team, or of its Enterprise Grid
// organization; a Slack Connect member of another organization is refused.
func TestVerifiedEmailTeam(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		auth, user map[string]any // auth.test's answer, users.info's user (besides its address)
		ok         bool
	}{
		"SameTeam":       {auth: map[string]any{"team_id": "T1"}, user: map[string]any{"team_id": "T1"}, ok: true},
		"OtherTeam":      {auth: map[string]any{"team_id": "T1"}, user: map[string]any{"team_id": "T2"}},
		"SameGridOrg":    {auth: map[string]any{"team_id": "T1", "enterprise_id": "E1"}, user: map[string]any{"team_id": "T2", "enterprise_user": map[string]any{"enterprise_id": "E1"}}, ok: true},
		"OtherGridOrg":   {auth: map[string]any{"team_id": "T1", "enterprise_id": "E1"}, user: map[string]any{"team_id": "T2", "enterprise_user": map[string]any{"enterprise_id": "E2"}}},
		"OrgWideInstall": {auth: map[string]any{"enterprise_id": "E1"}, user: map[string]any{"team_id": "T2", "enterprise_user": map[string]any{"enterprise_id": "E1"}}, ok: true},
		"NoTeamAnswered": {auth: map[string]any{}, user: map[string]any{"team_id": ""}},
		"NoGridForTeam":  {auth: map[string]any{"team_id": "T1"}, user: map[string]any{"team_id": "T2", "enterprise_user": map[string]any{"enterprise_id": ""}}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				answer := map[string]any{"ok": true}
				switch r.URL.Path {
				case "/api/auth.test":
					for k, v := range tc.auth {
						answer[k] = v
					}
				case "/api/users.info":
					u := map[string]any{"id": "U1", "is_email_confirmed": true, "profile": map[string]any{"email": "a@example.com"}}
					for k, v := range tc.user {
						u[k] = v
					}
					answer["user"] = u
				}
				_ = json.NewEncoder(w).Encode(answer)
			}))
			t.Cleanup(srv.Close)
			c := slack.New(config.Slack{BotToken: "xoxb-test", APIURL: srv.URL + "/api"}, srv.Client(), nil, "", nil)
			email, err := c.VerifiedEmail(context.Background(), "U1")
			if !tc.ok {
				require.Error(t, err)
				require.Empty(t, email)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "a@example.com", email)
		})
	}
}

// TestTextWithinSlackLimits: model text made of invisible characters or
// angle brackets, each escaped into several characters, still fits Slack's
// 3000 characters per text block, so that Slack does not refuse the message
// or the reason modal.
func TestTextWithinSlackLimits(t *testing.T) {
	t.Parallel()
	for _, fill := range []string{"\u200B", "<", "\u202E"} {
		long := strings.Repeat(fill, 5000)
		view := slack.ReasonModal(slack.ModalState{RequestID: "r1", PayloadHash: "h1", Verdict: vocab.VerdictReject}, long)
		text := view["blocks"].([]any)[0].(slack.Block).Text.Text
		require.LessOrEqual(t, len([]rune(text)), 3000, "modal, %q", fill)
		require.NotContains(t, text, fill, "still escaped")

		it := notice.Item{Kind: notice.RequestWaiting, Title: "A request waits for you", ActionKind: long, Target: long, Summary: long,
			Risk: long, Rule: long, Detail: long, RequestID: "r1", PayloadHash: "h1", Pending: true}
		blocks, _ := slack.Blocks(notice.Message{Items: []notice.Item{it}}, true, "https://cs.example.com")
		for _, b := range blocks {
			if b.Text != nil {
				require.LessOrEqual(t, len([]rune(b.Text.Text)), 3000, "message, %q", fill)
				if b.Text.Verbatim {
					require.NotContains(t, b.Text.Text, fill, "still escaped")
				}
			}
		}
	}
}
