package approval_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/approval"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// fakeNotices records the reminders asked for; fan-outs and sends do nothing.
type fakeNotices struct{ reminders map[notice.Kind]time.Time }

func (f *fakeNotices) ScheduleFanout(context.Context, pgx.Tx, int64) error { return nil }
func (f *fakeNotices) ScheduleFlush(context.Context, pgx.Tx, int64, string, time.Time) error {
	return nil
}
func (f *fakeNotices) ScheduleSend(context.Context, pgx.Tx, int64) error        { return nil }
func (f *fakeNotices) ScheduleChatUpdate(context.Context, pgx.Tx, string) error { return nil }
func (f *fakeNotices) ScheduleReminder(_ context.Context, _ pgx.Tx, _ string, k notice.Kind, at time.Time) error {
	f.reminders[k] = at
	return nil
}

// TestNoticesInTheCausesTransaction: opening a request writes its event and
// schedules its reminders; a decision whose transaction rolls back leaves no
// event; a committed one leaves exactly one.
func TestNoticesInTheCausesTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	notices := &fakeNotices{reminders: map[notice.Kind]time.Time{}}
	svc := approval.New(approval.Config{Pool: pool, Scheduler: &fakeScheduler{}, Runs: &fakeRuns{}, Policies: staticPolicy{},
		Now: time.Now, OutputLimitFunc: func(string) int { return 1 << 20 }, Notices: notice.NewOutbox(notices)})

	run, _, err := store.RunInsert(ctx, pool, store.RunInsertParams{Workflow: "w", BusinessKey: "k", Input: json.RawMessage(`{}`), StartedBy: "agent"})
	require.NoError(t, err)
	raw := json.RawMessage(`{"kind":"refund","summary":"Refund 5","params":{"amount":5}}`)
	deadline := time.Now().Add(10 * time.Hour).Truncate(time.Microsecond)
	req, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.Request, error) {
		return svc.Open(ctx, tx, &store.Request{RunID: run.ID, StepSeq: 1, Workflow: "w", Tier: vocab.TierExplicit,
			Status: vocab.RequestPending, ActionKind: "refund", Summary: "Refund 5", Action: raw, Roles: []vocab.Role{vocab.RoleApprover},
			PayloadHash: approval.PayloadHash(raw), Rule: "refunds", ApprovalsRequired: 1, Deadline: &deadline,
			OnTimeout: "reject", StartedBy: "agent"}, policy.Decision{Tier: vocab.TierExplicit, Rule: "refunds"})
	})
	require.NoError(t, err)
	span := deadline.Sub(req.CreatedAt)
	require.WithinDuration(t, req.CreatedAt.Add(span/2), notices.reminders[notice.DeadlineHalf], time.Millisecond)
	require.WithinDuration(t, req.CreatedAt.Add(span*9/10), notices.reminders[notice.DeadlineNear], time.Millisecond)

	events := func() []string {
		rows, err := pool.Query(ctx, `SELECT kind || ':' || array_to_string(roles, ',') FROM notice_events ORDER BY id`)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return out
	}
	require.Equal(t, []string{"request.waiting:approver,admin"}, events())

	// Someone subscribes to decisions: without subscribers no event is written.
	u, err := store.UserInsert(ctx, pool, "watcher@example.com", "Watcher", string(vocab.RoleViewer), "x")
	require.NoError(t, err)
	require.NoError(t, store.NoticePreferenceSet(ctx, pool, u.ID, store.NoticePrefs{Channels: []string{"email"},
		Events: []string{string(notice.DecisionRecorded)}, TimeZone: "UTC"}))

	p := approval.DecideParams{RequestID: req.ID, PayloadHash: req.PayloadHash, Verdict: vocab.VerdictApprove,
		Actor: approval.Actor{Name: "approver@example.com", Roles: []vocab.Role{vocab.RoleApprover}}}
	failed := errors.New("the commit never came")
	err = store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := svc.DecideTx(ctx, tx, p, approval.TxOptions{Enqueue: true, Notify: true}); err != nil {
			return err
		}
		require.Len(t, events(), 1, "the decision's event is not visible before its commit")
		return failed
	})
	require.ErrorIs(t, err, failed)
	require.Equal(t, []string{"request.waiting:approver,admin"}, events(), "a rolled-back decision notifies no one")

	_, err = svc.Decide(ctx, p)
	require.NoError(t, err)
	require.Equal(t, []string{"request.waiting:approver,admin", "decision.recorded:"}, events())

	t.Run("NoSubscribers", func(t *testing.T) {
		require.NoError(t, store.NoticePreferenceDelete(ctx, pool, u.ID))
		run, _, err := store.RunInsert(ctx, pool, store.RunInsertParams{Workflow: "w", BusinessKey: "k2", Input: json.RawMessage(`{}`), StartedBy: "agent"})
		require.NoError(t, err)
		req, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.Request, error) {
			return svc.Open(ctx, tx, &store.Request{RunID: run.ID, StepSeq: 1, Workflow: "w", Tier: vocab.TierExplicit,
				Status: vocab.RequestPending, ActionKind: "refund", Summary: "Refund 5", Action: raw,
				PayloadHash: approval.PayloadHash(raw), Rule: "refunds", ApprovalsRequired: 1, StartedBy: "agent"},
				policy.Decision{Tier: vocab.TierExplicit, Rule: "refunds"})
		})
		require.NoError(t, err)
		p.RequestID, p.PayloadHash = req.ID, req.PayloadHash
		_, err = svc.Decide(ctx, p)
		require.NoError(t, err)
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notice_events WHERE kind = 'decision.recorded'`).Scan(&n))
		require.Equal(t, 1, n, "no subscriber: no event")
	})
}
