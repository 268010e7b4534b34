package web_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// TestHistorySaysWhatWasDecided: a decision's row names the request's
// summary and the verdict, and an edit's row its diff; sign-ins show only
// when asked for; counts are singular or plural as they should be.
func TestHistorySaysWhatWasDecided(t *testing.T) {
	t.Parallel()
	c := startConsole(t, nil)
	ctx := context.Background()
	run, req := c.startRun(t, "support_triage", "W-1", demo.Ticket{ID: "W1", Customer: "a@example.com",
		Subject: "How do I login?", Body: "password"}, "api@example.com")
	var action workflow.Action
	require.NoError(t, json.Unmarshal(req.Action, &action))
	edited := map[string]any{}
	for k, v := range action.Params {
		edited[k] = v
	}
	key := ""
	for k, v := range edited {
		if _, ok := v.(string); ok {
			key = k
			break
		}
	}
	require.NotEmpty(t, key, "the proposal has a text parameter to edit")
	edited[key] = "edited by a human"
	_, err := c.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, PayloadHash: req.PayloadHash, Verdict: vocab.VerdictEdit,
		EditedParams: edited, Actor: workflow.Actor{Name: "reviewer@example.com", Roles: []vocab.Role{"reviewer"}}})
	require.NoError(t, err)
	c.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunWaitingHuman)
	_, err = account.SignIn(ctx, c.Pool, "reviewer@example.com", password, "192.0.2.1")
	require.NoError(t, err)
	_, err = audit.Chain(ctx, c.Pool)
	require.NoError(t, err)
	hc := c.client(t, "viewer@example.com")

	doc, _ := c.get(t, hc, "/history?kind=decision.recorded")
	row := doc.Find(`[data-testid=event]`).First()
	require.Equal(t, "approved with edits", row.Find(`[data-testid=decided]`).Text())
	require.Contains(t, row.Find(`[data-testid=details]`).Text(), req.Summary)
	require.Equal(t, req.Summary, strings.TrimSpace(row.Find(`[data-testid=subject-summary]`).Text()))
	change := row.Find(`[data-testid=decided-change]`)
	require.Equal(t, 1, change.Length())
	require.Contains(t, change.Find(`code`).Text(), key)
	require.Contains(t, change.Find(`.to`).Text(), "edited by a human")
	require.Equal(t, "1 decision", strings.Join(strings.Fields(doc.Find(`[data-testid=summary] p`).Text()), " ")[:len("1 decision")])
	require.NotContains(t, doc.Find(`[data-testid=summary]`).Text(), "1 decisions")

	doc, _ = c.get(t, hc, "/history")
	kinds := doc.Find(`[data-testid=event] code`).Text()
	require.NotContains(t, kinds, "auth.login", "sign-ins are hidden by default")
	require.Equal(t, 1, doc.Find(`[data-testid=signins-hidden]`).Length())
	link, _ := doc.Find(`[data-testid=export-csv]`).Attr("href")
	require.Contains(t, link, "signins=0", "the export of this view leaves them out too")
	for _, q := range []string{"/history?signins=1", "/history?kind=auth.login"} {
		doc, _ = c.get(t, hc, q)
		require.Contains(t, doc.Find(`[data-testid=event] code`).Text(), "auth.login", q)
		require.Zero(t, doc.Find(`[data-testid=signins-hidden]`).Length(), q)
	}
	_, status := c.get(t, hc, "/history?signins=maybe")
	require.Equal(t, 400, status)
}
