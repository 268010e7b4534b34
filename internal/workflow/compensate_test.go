package workflow_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

type tripIn struct {
	Mode     string `json:"mode"` // fail, gate, or anything else to end normally
	FailUndo bool   `json:"fail_undo,omitempty"`
	Stall    bool   `json:"stall,omitempty"` // the flight's undo stalls on its first call
}

type booking struct {
	Ref      string `json:"ref"`
	FailUndo bool   `json:"fail_undo"`
	Stall    bool   `json:"stall"`
}

// trips records, per run, the order in which undos ran.
type trips struct {
	mu          sync.Mutex
	undone      map[string][]string
	flightUndos atomic.Int32
	release     chan struct{}
	pid         chan int // the backend of a stalled undo's transaction
}

func (tr *trips) ran(runID, what string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.undone[runID] = append(tr.undone[runID], what)
}

func (tr *trips) of(runID string) []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.undone[runID]...)
}

// register adds the trip workflow: two effects with undos, then a failure,
// a gate, or a plain step; the undos write to the outbox in their
// transaction, so what they did is counted in the database.
func (tr *trips) register(r *workflow.Registry, _ *ai.Offline) {
	book := func(kind string, in tripIn) func(context.Context, workflow.EffectContext) (booking, error) {
		return func(ctx context.Context, ec workflow.EffectContext) (booking, error) {
			_, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), kind, map[string]string{"ref": ec.Key})
			return booking{Ref: ec.Key, FailUndo: in.FailUndo, Stall: in.Stall}, err
		}
	}
	workflow.Register(r, "trip", func(ctx context.Context, in tripIn) (string, error) {
		if _, err := workflow.Effect(ctx, "book_flight", book("flight", in)); err != nil {
			return "", err
		}
		if _, err := workflow.Effect(ctx, "book_hotel", book("hotel", in)); err != nil {
			return "", err
		}
		if _, err := workflow.Step(ctx, "plain", func(context.Context) (int, error) { return 1, nil }); err != nil {
			return "", err
		}
		switch in.Mode {
		case "fail":
			return workflow.Step(ctx, "pay", func(context.Context) (string, error) {
				return "", workflow.Fail("card_declined", "the card was declined")
			})
		case "gate":
			_, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "payment.refund", Summary: "Pay for the trip",
				Params: map[string]any{"amount": 100, "customer": "ann"}})
			return "paid", err
		}
		return "done", nil
	}, workflow.Options{Retry: workflow.RetryPolicy{MaxAttempts: 1}})
	undo := func(kind string) func(context.Context, workflow.EffectContext, booking) error {
		return func(ctx context.Context, ec workflow.EffectContext, b booking) error {
			runID := b.Ref[:36]
			if kind == "flight" {
				if n := tr.flightUndos.Add(1); n == 1 && b.Stall {
					var pid int
					if err := ec.Tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
						return err
					}
					tr.pid <- pid
					<-tr.release // deaf to its context: a dead process
				}
			}
			if b.FailUndo && kind == "flight" {
				return errors.New("the airline is down")
			}
			if _, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, runID, "cancel_"+kind, map[string]string{"ref": b.Ref}); err != nil {
				return err
			}
			tr.ran(runID, kind)
			return nil
		}
	}
	workflow.Compensate(r, "trip", "book_flight", undo("flight"))
	workflow.Compensate(r, "trip", "book_hotel", undo("hotel"))
}

func outboxKinds(t *testing.T, b *testapp.Bundle, runID string) map[string]int {
	t.Helper()
	rows, err := b.Pool.Query(context.Background(), `SELECT kind, count(*) FROM demo_outbox WHERE run_id = $1 GROUP BY kind`, runID)
	require.NoError(t, err)
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		require.NoError(t, rows.Scan(&k, &n))
		out[k] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// TestCompensation: the undos of the effects a run applied run newest first,
// once each, with their own keys and step rows, when the run fails for good,
// is rejected at a later gate or is cancelled; the run ends compensated and
// the rollback is audited with its cause. An undo that fails ends the run
// compensation_failed. A run that completes undoes nothing.
func TestCompensation(t *testing.T) {
	t.Parallel()
	tr := &trips{undone: map[string][]string{}, release: make(chan struct{})}
	b := testapp.Start(t, testapp.Options{Register: tr.register})
	ctx := context.Background()

	check := func(t *testing.T, runID, cause string) {
		t.Helper()
		require.Equal(t, []string{"hotel", "flight"}, tr.of(runID), "newest effect undone first")
		require.Equal(t, map[string]int{"flight": 1, "hotel": 1, "cancel_flight": 1, "cancel_hotel": 1}, outboxKinds(t, b, runID))
		steps, err := store.StepList(ctx, b.Pool, runID)
		require.NoError(t, err)
		var undos []string
		for _, s := range steps {
			if s.Kind == vocab.StepKindCompensation {
				require.Equal(t, vocab.StepCompleted, s.Status)
				undos = append(undos, s.Name)
			}
		}
		require.Equal(t, []string{"undo:book_hotel", "undo:book_flight"}, undos)
		require.Equal(t, 1, auditCount(t, b, runID, "run.compensating", cause))
		require.Equal(t, 1, auditCount(t, b, runID, "run.compensated", cause))
		run, err := store.RunGet(ctx, b.Pool, runID)
		require.NoError(t, err)
		require.Equal(t, cause, *run.CompensationCause)
		require.NotNil(t, run.FinishedAt)
	}

	t.Run("OnPermanentFailure", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "trip", "fail", tripIn{Mode: "fail"})
		done := b.WaitRun(t, run.ID, vocab.RunCompensated, vocab.RunCompensationFailed, vocab.RunFailed)
		require.Equal(t, vocab.RunCompensated, done.Status, "error: %v", done.ErrorMessage)
		require.Equal(t, "card_declined", *done.ErrorCode, "the failure that caused the rollback stays")
		check(t, run.ID, workflow.CauseFailed)
	})

	t.Run("OnLaterRejection", func(t *testing.T) {
		t.Parallel()
		run := b.WaitRun(t, start(t, b, "trip", "gate", tripIn{Mode: "gate"}).ID, vocab.RunWaitingHuman)
		req := b.PendingRequest(t, run.ID)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer("rev@example.com"),
			Verdict: vocab.VerdictReject, Reason: "too expensive", PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		done := b.WaitRun(t, run.ID, vocab.RunCompensated, vocab.RunCompensationFailed, vocab.RunRejected)
		require.Equal(t, vocab.RunCompensated, done.Status)
		check(t, run.ID, workflow.CauseRejected)
	})

	t.Run("OnCancel", func(t *testing.T) {
		t.Parallel()
		run := b.WaitRun(t, start(t, b, "trip", "cancel", tripIn{Mode: "gate"}).ID, vocab.RunWaitingHuman)
		require.NoError(t, b.Engine.Cancel(ctx, run.ID, "ops@example.com"))
		require.ErrorIs(t, b.Engine.Cancel(ctx, run.ID, "ops@example.com"), workflow.ErrFinal, "a rollback under way is not cancelled again")
		done := b.WaitRun(t, run.ID, vocab.RunCompensated, vocab.RunCompensationFailed, vocab.RunCancelled)
		require.Equal(t, vocab.RunCompensated, done.Status)
		check(t, run.ID, workflow.CauseCancelled)
		require.Equal(t, 1, auditCount(t, b, run.ID, "run.cancelled", ""))
	})

	t.Run("UndoFails", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "trip", "undofails", tripIn{Mode: "fail", FailUndo: true})
		done := b.WaitRun(t, run.ID, vocab.RunCompensated, vocab.RunCompensationFailed, vocab.RunFailed)
		require.Equal(t, vocab.RunCompensationFailed, done.Status)
		require.Contains(t, *done.ErrorMessage, "the airline is down")
		require.Equal(t, []string{"hotel"}, tr.of(run.ID), "the hotel was undone before the flight's undo failed")
		require.Equal(t, 1, auditCount(t, b, run.ID, "run.compensation_failed", workflow.CauseFailed))
		kinds := outboxKinds(t, b, run.ID)
		require.Zero(t, kinds["cancel_flight"])
	})

	t.Run("CompletedRunUndoesNothing", func(t *testing.T) {
		t.Parallel()
		run := start(t, b, "trip", "ok", tripIn{Mode: "none"})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed, vocab.RunCompensated)
		require.Equal(t, vocab.RunCompleted, done.Status)
		require.Empty(t, tr.of(run.ID))
		require.ErrorIs(t, b.Engine.Cancel(ctx, run.ID, "ops@example.com"), workflow.ErrFinal)
	})
}

// TestCompensationCrash: the process running a rollback dies in the middle
// of its second undo, after the first committed: its session ends (the
// undo's transaction with it) and its lease lapses. The sweeper hands the run
// on and the new execution skips the recorded undo, runs the other once, and
// ends the run compensated; the dead execution, should it wake, records
// nothing.
func TestCompensationCrash(t *testing.T) {
	t.Parallel()
	tr := &trips{undone: map[string][]string{}, release: make(chan struct{}), pid: make(chan int, 1)}
	var once sync.Once
	wake := func() { once.Do(func() { close(tr.release) }) }
	t.Cleanup(wake)
	b := testapp.Start(t, testapp.Options{Register: tr.register,
		Recovery: app.Recovery{Lease: 800 * time.Millisecond, RenewEvery: time.Hour, SweepEvery: 100 * time.Millisecond}})
	run := start(t, b, "trip", "crash", tripIn{Mode: "fail", Stall: true})
	select {
	case pid := <-tr.pid:
		_, err := b.Pool.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, pid)
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the rollback never reached the flight's undo")
	}
	require.Equal(t, []string{"hotel"}, tr.of(run.ID), "the hotel's undo committed before the crash")
	require.Eventually(t, func() bool { return auditCount(t, b, run.ID, "run.recovered", "") > 0 }, 20*time.Second, 20*time.Millisecond,
		"the sweeper hands the stalled rollback on")
	wake() // the dead execution wakes: nothing it does is recorded
	done := b.WaitRun(t, run.ID, vocab.RunCompensated, vocab.RunCompensationFailed)
	require.Equal(t, vocab.RunCompensated, done.Status, "error: %v", done.ErrorMessage)
	require.EqualValues(t, 2, tr.flightUndos.Load(), "the flight's undo was tried by both executions")
	require.Eventually(t, func() bool {
		return outboxKinds(t, b, run.ID)["cancel_flight"] == 1
	}, 5*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // the stale transaction has rolled back by now
	require.Equal(t, map[string]int{"flight": 1, "hotel": 1, "cancel_flight": 1, "cancel_hotel": 1}, outboxKinds(t, b, run.ID),
		"each undo's writes committed once")
	require.Equal(t, 1, auditCount(t, b, run.ID, "run.compensated", workflow.CauseFailed))
}
