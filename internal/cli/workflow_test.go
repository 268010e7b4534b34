package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// TestVersionAndReplayCommands drives workflow list, run export and run
// replay against runs a real process made: one completed, one waiting.
func TestVersionAndReplayCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testapp.Start(t, testapp.Options{})
	env := map[string]string{"DATABASE_URL": b.URL}
	startTicket := func(key string) string {
		raw, _ := json.Marshal(demo.Ticket{ID: key, Customer: "ada@example.com", Subject: "Refund", Body: "broken", OrderTotal: 120})
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "support_triage", BusinessKey: key, Input: raw, StartedBy: "agent"})
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		return run.ID
	}
	done := startTicket("T-1")
	req := b.PendingRequest(t, done)
	_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash,
		Actor: workflow.Actor{Name: "rev@example.com", Roles: []vocab.Role{"reviewer"}}})
	require.NoError(t, err)
	b.WaitRun(t, done, vocab.RunCompleted)
	waiting := startTicket("T-2")

	t.Run("WorkflowList", func(t *testing.T) {
		r := run(t, env, "workflow", "list")
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Regexp(t, `(?m)^WORKFLOW\s+VERSION\s+WAITING\s+RUNNING\s+REGISTERED$`, r.stdout)
		require.Regexp(t, `(?m)^support_triage\s+1\s+1\s+0\s+yes \(newest\)$`, r.stdout)
		require.Regexp(t, `(?m)^lead_enrichment\s+1\s+0\s+0\s+yes \(newest\)$`, r.stdout)

		// A binary that has moved support_triage to version 2 still sees the
		// waiting runs of version 1, which it no longer registers.
		v2 := workflow.NewRegistry()
		workflow.Register(v2, "support_triage", demo.SupportTriage, workflow.Options{Version: 2})
		r = runOpts(t, env, Options{Workflows: v2}, "workflow", "list", "--json")
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Contains(t, r.stdout, `{"workflow":"support_triage","version":1,"waiting":1,"running":0,"registered":false,"newest":false}`)
		require.Contains(t, r.stdout, `{"workflow":"support_triage","version":2,"waiting":0,"running":0,"registered":true,"newest":true}`)
	})

	t.Run("ExportThenReplay", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "run.json")
		r := run(t, env, "run", "export", done, "--out", path)
		require.Equal(t, exitOK, r.code, r.stderr)
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		var h workflow.History
		require.NoError(t, json.Unmarshal(raw, &h))
		require.Equal(t, workflow.HistoryFormat, h.Format)
		require.Len(t, h.Steps, 6)
		require.Len(t, h.Requests, 1)
		require.Len(t, h.Decisions, 1)
		require.Equal(t, 1, h.Run.Version)

		r = run(t, env, "run", "replay", done)
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Equal(t, "deterministic: 6 steps\n", r.stdout)
		r = run(t, env, "run", "replay", "--file", path)
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Equal(t, "deterministic: 6 steps\n", r.stdout)
		r = run(t, env, "run", "replay", waiting)
		require.Equal(t, "deterministic: 3 steps\n", r.stdout, "a waiting run replays up to its gate")

		// The code as a later change left it: the model is asked before the context is read.
		changed := workflow.NewRegistry()
		workflow.Register(changed, "support_triage", func(ctx context.Context, tk demo.Ticket) (string, error) {
			_, err := workflow.Generate[demo.Proposal](ctx, "propose_change", ai.Request{Task: "support_triage.propose"})
			return "", err
		})
		r = runOpts(t, env, Options{Workflows: changed}, "run", "replay", done)
		require.Equal(t, exitFail, r.code)
		require.Equal(t, `diverged at step 1: recorded step "collect_context", the code reached model "propose_change"`+"\n", r.stdout)
		require.Contains(t, r.stderr, "is not deterministic under this code")
		r = runOpts(t, env, Options{Workflows: changed}, "run", "replay", "--json", "--file", path)
		require.Equal(t, exitFail, r.code)
		require.Contains(t, r.stdout, `"recorded": {`)

		r = runOpts(t, env, Options{}, "run", "replay", done)
		require.Equal(t, exitFail, r.code)
		require.Contains(t, r.stderr, `"support_triage" version 1 is not registered`)
	})

	t.Run("BadArguments", func(t *testing.T) {
		for _, args := range [][]string{
			{"run", "replay"},
			{"run", "replay", done, "--file", "x.json"},
			{"run", "replay", "--file", filepath.Join(t.TempDir(), "missing.json")},
			{"run", "export", "nope"},
			{"workflow", "list", "extra"},
		} {
			r := run(t, env, args...)
			require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
		}
		r := run(t, env, "run", "export", "00000000-0000-0000-0000-000000000000")
		require.Equal(t, exitFail, r.code)
		require.Contains(t, r.stderr, "no run")
	})
}

// runOpts runs the command line with a binary's options.
func runOpts(t *testing.T, env map[string]string, opts Options, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] }, opts)
	return result{code, out.String(), errb.String()}
}
