package demo_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

func TestMain(m *testing.M) {
	// The order service's slow answer waits for the step's timeout.
	demo.OrderTimeout = 2 * time.Second
	os.Exit(m.Run())
}

// TestOrderSupport runs order_support through each failure the demo stream
// simulates: a slow order service and a 503 are retried and recover, a
// service that stays down fails the run before anything is proposed, and a
// bounced confirmation after the change was applied reverts it.
func TestOrderSupport(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{})
	ctx := context.Background()
	approver := workflow.Actor{Name: "rev@example.com", Roles: []vocab.Role{vocab.RoleApprover}}
	start := func(t *testing.T, key string, sims ...demo.Simulation) *store.Run {
		t.Helper()
		raw, _ := json.Marshal(demo.Ticket{ID: key, Customer: "ada@example.com", Subject: "How do I export invoices?",
			Body: "How do I export my invoices as PDF?", OrderTotal: 80, Simulate: sims})
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "order_support", BusinessKey: key, Input: raw, StartedBy: "agent"})
		require.NoError(t, err)
		return run
	}
	approve := func(t *testing.T, runID string) {
		t.Helper()
		b.WaitRunWithin(t, runID, 30*time.Second, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, runID)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: approver, Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
		require.NoError(t, err)
	}
	outboxKinds := func(t *testing.T, runID string) []string {
		t.Helper()
		rows, err := b.Pool.Query(ctx, `SELECT kind FROM demo_outbox WHERE run_id = $1 ORDER BY id`, runID)
		require.NoError(t, err)
		defer rows.Close()
		var kinds []string
		for rows.Next() {
			var k string
			require.NoError(t, rows.Scan(&k))
			kinds = append(kinds, k)
		}
		require.NoError(t, rows.Err())
		return kinds
	}
	lookups := func(t *testing.T, runID string) []*store.StepAttempt {
		t.Helper()
		attempts, err := store.StepAttemptList(ctx, b.Pool, runID)
		require.NoError(t, err)
		return attempts
	}

	t.Run("RecoversFromA503AndATimeout", func(t *testing.T) {
		t.Parallel()
		for key, sim := range map[string]demo.Simulation{"T-503": demo.OrderService503, "T-slow": demo.SlowOrderService} {
			run := start(t, key, sim)
			approve(t, run.ID)
			done := b.WaitRunWithin(t, run.ID, 30*time.Second, vocab.RunCompleted, vocab.RunFailed)
			require.Equal(t, vocab.RunCompleted, done.Status, "%s: %v", key, done.ErrorMessage)
			attempts := lookups(t, run.ID)
			require.Len(t, attempts, 1, "%s: one failed attempt recorded", key)
			if sim == demo.SlowOrderService {
				require.Contains(t, attempts[0].Error, "timed out", key)
			} else {
				require.Contains(t, attempts[0].Error, "503", key)
			}
			require.Equal(t, []string{"email.send", "email.confirmation"}, outboxKinds(t, run.ID))
		}
	})
	t.Run("FailsWhenTheServiceStaysDown", func(t *testing.T) {
		t.Parallel()
		run := start(t, "T-down", demo.OrderServiceDown)
		done := b.WaitRunWithin(t, run.ID, 30*time.Second, vocab.RunFailed)
		require.Len(t, lookups(t, run.ID), 3, "every attempt recorded")
		require.Empty(t, outboxKinds(t, done.ID))
	})
	t.Run("RevertsWhenTheConfirmationBounces", func(t *testing.T) {
		t.Parallel()
		run := start(t, "T-bounce", demo.MailBounce)
		approve(t, run.ID)
		done := b.WaitRunWithin(t, run.ID, 30*time.Second, vocab.RunCompensated, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunCompensated, done.Status, "%v", done.ErrorMessage)
		require.Equal(t, []string{"email.send", "revert"}, outboxKinds(t, run.ID), "the applied change and its undo")
	})
}

// TestColleaguesDecideWhatWaits lets the demo's colleagues loose on a few
// waiting requests: each decision goes through the approval path as the
// colleague (audited, by name), and a request a colleague leaves stays.
func TestColleaguesDecideWhatWaits(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs []string
	for i := range 6 {
		raw, _ := json.Marshal(demo.Ticket{ID: "T-c" + string(rune('a'+i)), Customer: "ada@example.com", Subject: "How do I export invoices?",
			Body: "How do I export my invoices as PDF?", OrderTotal: 80})
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "support_triage", BusinessKey: "colleague-" + string(rune('a'+i)), Input: raw, StartedBy: "agent"})
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
		runs = append(runs, run.ID)
	}
	go demo.DecideAsColleagues(ctx, b.Pool, b.Engine, 0, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	deadline := time.Now().Add(30 * time.Second)
	for {
		var decided, left int
		for _, id := range runs {
			reqs, err := store.RequestListByRun(ctx, b.Pool, id)
			require.NoError(t, err)
			switch r := reqs[len(reqs)-1]; {
			case r.Status == vocab.RequestPending && demo.LeftToDeadline(r.ID):
				left++
			case r.Status != vocab.RequestPending || len(reqs) > 1:
				decided++
				require.NotNil(t, reqs[0].DecidedBy)
				require.Contains(t, []string{"sam@example.com", "kim@example.com", "lee@example.com"}, *reqs[0].DecidedBy)
			}
		}
		if decided+left == len(runs) {
			break
		}
		require.True(t, time.Now().Before(deadline), "colleagues decided %d of %d", decided, len(runs)-left)
		time.Sleep(100 * time.Millisecond)
	}
}
