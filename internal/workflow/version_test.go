package workflow_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// greeter registers version v of a workflow that waits for a human and then
// says which code finished it.
func greeter(r *workflow.Registry, v int) {
	workflow.Register(r, "greeter", func(ctx context.Context, _ struct{}) (string, error) {
		if _, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "greet", Summary: "Say hello"}); err != nil {
			return "", err
		}
		return workflow.Step(ctx, "say", func(context.Context) (string, error) {
			return map[int]string{1: "hello from v1", 2: "hello from v2", 3: "hello from v3"}[v], nil
		})
	}, workflow.Options{Version: v})
}

// rejecter registers version v of a workflow that handles its rejections
// only in version 1.
func rejecter(r *workflow.Registry, v int) {
	workflow.Register(r, "rejecter", func(ctx context.Context, _ struct{}) (string, error) {
		d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "greet", Summary: "Say hello"})
		return "handled " + string(d.Verdict), err
	}, workflow.Options{Version: v, HandlesRejection: v == 1})
}

// TestVersions: a run keeps the version it started with across a deploy
// that adds a newer one, new runs start on the newest, and a run whose
// version the worker lacks fails at once with a clear code instead of
// waiting or being handed on by the sweeper.
func TestVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := testdb.Pool(t)
	// The deploy before: only version 1, no workers (its runs wait for a human anyway).
	old := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: func(r *workflow.Registry, _ *ai.Offline) {
		greeter(r, 1)
		rejecter(r, 1)
	}})
	// The deploy after: versions 1 and 2, with workers.
	b := testapp.StartOn(t, pool, url, testapp.Options{Register: func(r *workflow.Registry, _ *ai.Offline) {
		greeter(r, 1)
		greeter(r, 2)
		rejecter(r, 1)
		rejecter(r, 2)
	}})
	decide := func(t *testing.T, run *store.Run) *store.Run {
		t.Helper()
		run = b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, run.ID)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: boss, Verdict: vocab.VerdictApprove,
			PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		return b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
	}

	t.Run("RunKeepsItsVersion", func(t *testing.T) {
		run := start(t, old, "greeter", "old", struct{}{})
		require.Equal(t, 1, run.Version)
		done := decide(t, run)
		require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
		require.Equal(t, 1, done.Version)
		require.JSONEq(t, `"hello from v1"`, string(done.Output))
	})

	t.Run("RejectionIsTakenAsTheRunsVersionSays", func(t *testing.T) {
		run := b.WaitRun(t, start(t, old, "rejecter", "old", struct{}{}).ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, run.ID)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: boss, Verdict: vocab.VerdictReject,
			Reason: "no", PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunRejected, vocab.RunFailed)
		require.Equal(t, vocab.RunCompleted, done.Status, "version 1 handles rejections, although version 2 does not")
		require.JSONEq(t, `"handled reject"`, string(done.Output))
	})

	t.Run("NewRunsUseTheNewest", func(t *testing.T) {
		run := start(t, b, "greeter", "new", struct{}{})
		require.Equal(t, 2, run.Version)
		events, err := store.AuditList(ctx, pool, store.AuditFilter{RunID: run.ID, Kind: "run.started"}, 0, 10)
		require.NoError(t, err)
		require.Len(t, events, 1)
		require.JSONEq(t, `{"workflow":"greeter","business_key":"new","version":2}`, string(events[0].Details), "run.started names the version")
		done := decide(t, run)
		require.JSONEq(t, `"hello from v2"`, string(done.Output))
	})

	t.Run("UnregisteredVersionFailsClearly", func(t *testing.T) {
		// A process that knows a version 3 starts a run; the worker has only 1 and 2.
		ahead := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: func(r *workflow.Registry, _ *ai.Offline) {
			greeter(r, 3)
		}})
		run := start(t, ahead, "greeter", "ahead", struct{}{})
		require.Equal(t, 3, run.Version)
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunFailed, done.Status)
		require.Equal(t, workflow.CodeUnknownVersion, *done.ErrorCode)
		require.Contains(t, *done.ErrorMessage, `"greeter" version 3 is not registered in this worker (it has 1, 2)`)
		// Failed is final: the sweeper has nothing to hand on.
		r, err := b.Engine.Recover(ctx)
		require.NoError(t, err)
		require.Zero(t, r.HandedOn+r.Failed)
	})

	t.Run("CountsByVersion", func(t *testing.T) {
		run := start(t, old, "greeter", "waiting", struct{}{})
		b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		counts, err := store.RunVersionCounts(ctx, pool)
		require.NoError(t, err)
		require.Contains(t, counts, store.VersionCount{Workflow: "greeter", Version: 1, Waiting: 1})
	})
}

func TestRegistryVersions(t *testing.T) {
	t.Parallel()
	r := workflow.NewRegistry()
	greeter(r, 2)
	greeter(r, 1)
	def, ok := r.Get("greeter")
	require.True(t, ok)
	require.Equal(t, 2, def.Version(), "Get answers the newest")
	_, ok = r.GetVersion("greeter", 1)
	require.True(t, ok)
	_, ok = r.GetVersion("greeter", 3)
	require.False(t, ok)
	require.Len(t, r.Versions("greeter"), 2)
	require.PanicsWithValue(t, `workflow "greeter" version 2 registered twice`, func() { greeter(r, 2) })

	all := workflow.NewRegistry()
	greeter(all, 3)
	all.Include(r)
	require.Len(t, all.Versions("greeter"), 3)
	def, _ = all.Get("greeter")
	require.Equal(t, 3, def.Version())
	require.Panics(t, func() { all.Include(r) })

	unversioned := workflow.NewRegistry()
	workflow.Register(unversioned, "plain", func(context.Context, struct{}) (int, error) { return 0, nil })
	def, _ = unversioned.Get("plain")
	require.Equal(t, 1, def.Version(), "the default version is 1")
}
