package approval_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/approval"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// fakeScheduler records what the service asks the queue for.
type fakeScheduler struct {
	runs      []approval.RunRef
	deadlines []string
	closes    []string
}

func (f *fakeScheduler) EnqueueRun(_ context.Context, _ pgx.Tx, runID string, seq int) error {
	f.runs = append(f.runs, approval.RunRef{ID: runID, Seq: seq})
	return nil
}

func (f *fakeScheduler) EnqueueRuns(_ context.Context, _ pgx.Tx, runs []approval.RunRef) error {
	f.runs = append(f.runs, runs...)
	return nil
}

func (f *fakeScheduler) ScheduleDeadline(_ context.Context, _ pgx.Tx, requestID string, _ time.Time) error {
	f.deadlines = append(f.deadlines, requestID)
	return nil
}

func (f *fakeScheduler) ScheduleRun(ctx context.Context, tx pgx.Tx, runID string, seq int, _ time.Time) error {
	return f.EnqueueRun(ctx, tx, runID, seq)
}

func (f *fakeScheduler) ScheduleBatchClose(_ context.Context, _ pgx.Tx, batchID string, _ time.Time) error {
	f.closes = append(f.closes, batchID)
	return nil
}

// fakeRuns moves nothing; it says which run was resumed.
type fakeRuns struct{ resumed []string }

func (f *fakeRuns) Reject(context.Context, pgx.Tx, string, string) (int, bool, error) {
	return 0, false, nil
}

func (f *fakeRuns) Resume(_ context.Context, _ pgx.Tx, runID string) (int, error) {
	f.resumed = append(f.resumed, runID)
	return 1, nil
}

// TestServiceStandsAlone opens and decides a request through the package's
// two interfaces only: no engine, no River.
func TestServiceStandsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	sched, runs := &fakeScheduler{}, &fakeRuns{}
	svc := approval.New(approval.Config{Pool: pool, Scheduler: sched, Runs: runs,
		Policies: staticPolicy{}, Now: time.Now, OutputLimitFunc: func(string) int { return 1 << 20 }})

	run, _, err := store.RunInsert(ctx, pool, store.RunInsertParams{Workflow: "w", BusinessKey: "k", Input: json.RawMessage(`{}`), StartedBy: "agent"})
	require.NoError(t, err)
	raw := json.RawMessage(`{"kind":"refund","summary":"Refund 5","params":{"amount":5}}`)
	deadline := time.Now().Add(time.Hour)
	req, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.Request, error) {
		return svc.Open(ctx, tx, &store.Request{RunID: run.ID, StepSeq: 1, Workflow: "w", Tier: "explicit",
			Status: vocab.RequestPending, ActionKind: "refund", Summary: "Refund 5", Action: raw,
			PayloadHash: approval.PayloadHash(raw), Rule: "refunds", ApprovalsRequired: 1, Deadline: &deadline,
			OnTimeout: "reject", StartedBy: "agent"}, policy.Decision{Tier: vocab.TierExplicit, Rule: "refunds"})
	})
	require.NoError(t, err)
	require.Equal(t, []string{req.ID}, sched.deadlines, "the deadline job is scheduled with the request")
	require.Empty(t, sched.closes, "an explicit request joins no batch")

	res, err := svc.Decide(ctx, approval.DecideParams{RequestID: req.ID, PayloadHash: req.PayloadHash, Verdict: vocab.VerdictApprove,
		Actor: approval.Actor{Name: "reviewer@example.com", Roles: []vocab.Role{vocab.RoleReviewer}}})
	require.NoError(t, err)
	require.NotNil(t, res.Decision)
	require.Equal(t, []string{run.ID}, runs.resumed)
	require.Equal(t, []approval.RunRef{{ID: run.ID, Seq: 1}}, sched.runs, "the resume job goes through the scheduler")

	rows, err := pool.Query(ctx, `SELECT kind FROM audit_events ORDER BY id`)
	require.NoError(t, err)
	kinds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"approval.requested", "decision.recorded"}, kinds)
}

type staticPolicy struct{}

func (staticPolicy) Active(context.Context) (*policy.Policy, error) { return policy.Default(), nil }
