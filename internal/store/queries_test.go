package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/vocab"
)

// testBundle is what the store tests share: a database of the test's own.
type testBundle struct {
	ctx  context.Context
	pool *pgxpool.Pool
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	pool, _ := testdb.Pool(t)
	return &testBundle{ctx: context.Background(), pool: pool}
}

// run inserts a queued run of workflow w with a fresh business key.
func (b *testBundle) run(t *testing.T, w string) *store.Run {
	t.Helper()
	r, created, err := store.RunInsert(b.ctx, b.pool, store.RunInsertParams{Workflow: w, BusinessKey: uuid.NewString(),
		Input: json.RawMessage(`{"n":1}`), StartedBy: "test"})
	require.NoError(t, err)
	require.True(t, created)
	return r
}

// requestOpts are the fields of a request the tests vary.
type requestOpts struct {
	Tier     vocab.Tier
	Rule     string
	Workflow string
	Deadline *time.Time
}

// request inserts a pending request for run at step seq.
func (b *testBundle) request(t *testing.T, run *store.Run, seq int, o requestOpts) *store.Request {
	t.Helper()
	if o.Tier == "" {
		o.Tier = "explicit"
	}
	if o.Rule == "" {
		o.Rule = "rule"
	}
	if o.Workflow == "" {
		o.Workflow = run.Workflow
	}
	r, err := store.RequestInsert(b.ctx, b.pool, &store.Request{RunID: run.ID, StepSeq: seq, Workflow: o.Workflow,
		Tier: o.Tier, Status: vocab.RequestPending, ActionKind: "send", Summary: "s", Action: json.RawMessage(`{}`),
		PayloadHash: "h", PolicyVersion: 1, Rule: o.Rule, Reason: "r", ApprovalsRequired: 1, Deadline: o.Deadline,
		StartedBy: "test"})
	require.NoError(t, err)
	return r
}

func TestRun(t *testing.T) {
	t.Parallel()
	owner := uuid.NewString()
	const lease = time.Minute

	t.Run("InsertGetAndExisting", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := store.RunInsertParams{Workflow: "w", BusinessKey: "k", Input: json.RawMessage(`{"a":1}`), StartedBy: "ann"}
		r, created, err := store.RunInsert(b.ctx, b.pool, p)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, vocab.RunQueued, r.Status)
		require.JSONEq(t, `{"a":1}`, string(r.Input))
		require.Nil(t, r.FinishedAt)
		require.Nil(t, r.LeaseOwner)

		again, created, err := store.RunInsert(b.ctx, b.pool, p)
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, r.ID, again.ID)

		got, err := store.RunGet(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Equal(t, r, got)
	})

	t.Run("ClaimLeaseAndComplete", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := b.run(t, "w")
		claimed, err := store.RunClaim(b.ctx, b.pool, r.ID, 0, statuses(vocab.RunQueued), owner, lease)
		require.NoError(t, err)
		require.Equal(t, vocab.RunRunning, claimed.Status)
		require.Equal(t, owner, *claimed.LeaseOwner)
		require.Equal(t, 1, claimed.Attempt)

		_, err = store.RunClaim(b.ctx, b.pool, r.ID, 0, statuses(vocab.RunQueued, vocab.RunRunning), uuid.NewString(), lease)
		require.ErrorIs(t, err, store.ErrNotFound, "a live lease is not taken over")
		_, err = store.RunClaim(b.ctx, b.pool, r.ID, 1, statuses(vocab.RunRunning), owner, lease)
		require.ErrorIs(t, err, store.ErrNotFound, "another resume sequence")

		require.NoError(t, store.RunLeaseRenew(b.ctx, b.pool, r.ID, owner, lease))
		require.ErrorIs(t, store.RunLeaseRenew(b.ctx, b.pool, r.ID, uuid.NewString(), lease), store.ErrNotFound)
		require.ErrorIs(t, store.RunComplete(b.ctx, b.pool, r.ID, uuid.NewString(), json.RawMessage(`{}`),
			statuses(vocab.RunRunning)), store.ErrNotFound, "only the owner completes")

		require.NoError(t, store.RunComplete(b.ctx, b.pool, r.ID, owner, json.RawMessage(`{"done":true}`), statuses(vocab.RunRunning)))
		got, err := store.RunGet(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunCompleted, got.Status)
		require.JSONEq(t, `{"done":true}`, string(got.Output))
		require.NotNil(t, got.FinishedAt)
		require.Nil(t, got.LeaseOwner)
		require.ErrorIs(t, store.RunLeaseRelease(b.ctx, b.pool, r.ID, owner), store.ErrNotFound)
	})

	t.Run("StepsTogetherAndCompleteWithSteps", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := b.run(t, "w")
		_, err := store.RunClaim(b.ctx, b.pool, r.ID, 0, statuses(vocab.RunQueued), owner, lease)
		require.NoError(t, err)
		at := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
		step := func(seq int, name string, kind vocab.StepKind, out string, tokens, calls int) store.StepRecord {
			return store.StepRecord{RunID: r.ID, Seq: seq, Name: name, Kind: kind, Output: json.RawMessage(out), Attempts: 1,
				Tokens: tokens, ModelCalls: calls, StartedAt: at, FinishedAt: at.Add(time.Duration(seq+1) * time.Second), Owner: owner}
		}
		held := []store.StepRecord{step(0, "a", vocab.StepKindStep, `1`, 0, 0), step(1, "b", vocab.StepKindStep, `{"x":"y"}`, 0, 0)}
		stranger := append(held[:2:2], step(2, "ask", vocab.StepKindModel, `{"n":2}`, 7, 1))
		stranger[2].Owner = uuid.NewString()
		require.ErrorIs(t, store.StepComplete(b.ctx, b.pool, stranger...), store.ErrNotFound, "only the owner records")
		steps, err := store.StepList(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Empty(t, steps, "a refused batch stores nothing")

		require.NoError(t, store.StepComplete(b.ctx, b.pool, append(held, step(2, "ask", vocab.StepKindModel, `{"n":2}`, 7, 1))...))
		got, err := store.RunGet(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Equal(t, 3, got.StepsUsed)
		require.Equal(t, 7, got.TokensUsed)
		require.Equal(t, 1, got.ModelCalls)
		require.Equal(t, "ask", got.CurrentStep)
		steps, err = store.StepList(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Len(t, steps, 3)
		for i, s := range steps {
			require.Equal(t, i, s.Seq)
			require.Equal(t, vocab.StepCompleted, s.Status)
			require.WithinDuration(t, at.Add(time.Duration(i+1)*time.Second), *s.FinishedAt, time.Millisecond, "the time the step ended, not the write's")
		}
		require.JSONEq(t, `{"x":"y"}`, string(steps[1].Output))
		require.Equal(t, vocab.StepKindModel, steps[2].Kind)
		require.Equal(t, 7, steps[2].Tokens)

		last := step(3, "summarize", vocab.StepKindStep, `"done"`, 0, 0)
		require.ErrorIs(t, store.RunComplete(b.ctx, b.pool, r.ID, uuid.NewString(), json.RawMessage(`{}`), statuses(vocab.RunRunning), last),
			store.ErrNotFound)
		steps, err = store.StepList(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Len(t, steps, 3, "a refused completion stores no step")
		require.NoError(t, store.RunComplete(b.ctx, b.pool, r.ID, owner, json.RawMessage(`{"ok":1}`), statuses(vocab.RunRunning), last))
		got, err = store.RunGet(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunCompleted, got.Status)
		require.Equal(t, 4, got.StepsUsed)
		require.Equal(t, "summarize", got.CurrentStep)
		steps, err = store.StepList(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Len(t, steps, 4)
		require.JSONEq(t, `"done"`, string(steps[3].Output))
	})

	t.Run("ClaimHistory", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := b.run(t, "w")
		claimed, steps, err := store.RunClaimHistory(b.ctx, b.pool, r.ID, 0, statuses(vocab.RunQueued), owner, lease)
		require.NoError(t, err)
		require.Equal(t, vocab.RunRunning, claimed.Status)
		require.Equal(t, owner, *claimed.LeaseOwner)
		require.Empty(t, steps)
		at := time.Now().UTC()
		require.NoError(t, store.StepComplete(b.ctx, b.pool,
			store.StepRecord{RunID: r.ID, Seq: 0, Name: "a", Kind: vocab.StepKindStep, Output: json.RawMessage(`{"k": [1, "two"]}`),
				Attempts: 1, StartedAt: at, Owner: owner},
			store.StepRecord{RunID: r.ID, Seq: 1, Name: "m", Kind: vocab.StepKindModel, Output: json.RawMessage(`"x"`),
				Attempts: 2, Tokens: 5, ModelCalls: 1, StartedAt: at, Owner: owner}))
		require.NoError(t, store.StepFail(b.ctx, b.pool, store.StepRecord{RunID: r.ID, Seq: 2, Name: "f", Kind: vocab.StepKindStep,
			Error: "boom", Attempts: 1, StartedAt: at, Owner: owner}))
		require.NoError(t, store.RunLeaseRelease(b.ctx, b.pool, r.ID, owner))

		_, _, err = store.RunClaimHistory(b.ctx, b.pool, r.ID, 1, statuses(vocab.RunRunning), owner, lease)
		require.ErrorIs(t, err, store.ErrNotFound, "another resume sequence")
		claimed, steps, err = store.RunClaimHistory(b.ctx, b.pool, r.ID, 0, statuses(vocab.RunRunning), owner, lease)
		require.NoError(t, err)
		require.Equal(t, 2, claimed.StepsUsed)
		listed, err := store.StepList(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Len(t, steps, 3)
		for i := range listed {
			require.Equal(t, listed[i].Seq, steps[i].Seq)
			require.Equal(t, listed[i].Name, steps[i].Name)
			require.Equal(t, listed[i].Kind, steps[i].Kind)
			require.Equal(t, listed[i].Status, steps[i].Status)
			require.Equal(t, listed[i].Attempts, steps[i].Attempts)
			require.Equal(t, listed[i].Tokens, steps[i].Tokens)
			require.Equal(t, listed[i].Error, steps[i].Error)
			require.Equal(t, string(listed[i].Output), string(steps[i].Output))
			require.True(t, listed[i].StartedAt.Equal(steps[i].StartedAt))
			require.Equal(t, listed[i].FinishedAt == nil, steps[i].FinishedAt == nil)
			if listed[i].FinishedAt != nil {
				require.True(t, listed[i].FinishedAt.Equal(*steps[i].FinishedAt))
			}
		}
	})

	t.Run("FailRetryingThenFailed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := b.run(t, "w")
		_, err := store.RunClaim(b.ctx, b.pool, r.ID, 0, statuses(vocab.RunQueued), owner, lease)
		require.NoError(t, err)
		require.NoError(t, store.RunFail(b.ctx, b.pool, r.ID, owner, string(vocab.RunRetrying), "E", "boom", statuses(vocab.RunRunning), lease))
		got, err := store.RunGet(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunRetrying, got.Status)
		require.Equal(t, 1, got.Failures)
		require.Equal(t, "boom", *got.ErrorMessage)
		require.Nil(t, got.FinishedAt)
		require.ErrorIs(t, store.RunFail(b.ctx, b.pool, r.ID, owner, string(vocab.RunFailed), "E", "boom",
			statuses(vocab.RunRunning, vocab.RunRetrying), lease), store.ErrNotFound, "the lease was given up")

		claimed, err := store.RunClaim(b.ctx, b.pool, r.ID, 0, statuses(vocab.RunRetrying), owner, lease)
		require.NoError(t, err)
		require.Equal(t, 2, claimed.Attempt)
		require.NoError(t, store.RunFail(b.ctx, b.pool, r.ID, owner, string(vocab.RunFailed), "E", "again", statuses(vocab.RunRunning), lease))
		got, err = store.RunGet(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunFailed, got.Status)
		require.NotNil(t, got.FinishedAt)
	})

	t.Run("SuspendResumeAndSetStatus", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r := b.run(t, "w")
		require.ErrorIs(t, store.RunSuspend(b.ctx, b.pool, r.ID, "ask", statuses(vocab.RunRunning)), store.ErrNotFound)
		require.NoError(t, store.RunSuspend(b.ctx, b.pool, r.ID, "ask", statuses(vocab.RunQueued)))
		seq, err := store.RunResume(b.ctx, b.pool, r.ID, statuses(vocab.RunWaitingHuman))
		require.NoError(t, err)
		require.Equal(t, 1, seq)
		_, err = store.RunResume(b.ctx, b.pool, r.ID, statuses(vocab.RunWaitingHuman))
		require.ErrorIs(t, err, store.ErrNotFound)

		require.NoError(t, store.RunSetStatus(b.ctx, b.pool, r.ID, statuses(vocab.RunQueued), string(vocab.RunCancelled)))
		got, err := store.RunGet(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunCancelled, got.Status)
		require.Equal(t, "ask", got.CurrentStep)
		require.NotNil(t, got.FinishedAt)
		require.ErrorIs(t, store.RunSetStatus(b.ctx, b.pool, r.ID, statuses(vocab.RunQueued), string(vocab.RunRunning)), store.ErrNotFound)
	})

	t.Run("ListFiltersAndPages", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var ids []string
		for i := range 5 {
			r, _, err := store.RunInsert(b.ctx, b.pool, store.RunInsertParams{Workflow: "w", BusinessKey: fmt.Sprintf("order_%d", i),
				Input: json.RawMessage(`{}`), StartedBy: "t"})
			require.NoError(t, err)
			ids = append(ids, r.ID)
		}
		other := b.run(t, "other")
		require.NoError(t, store.RunSetStatus(b.ctx, b.pool, other.ID, statuses(vocab.RunQueued), string(vocab.RunCancelled)))

		all, err := store.RunList(b.ctx, b.pool, store.RunListParams{})
		require.NoError(t, err)
		require.Len(t, all, 6)
		for i := 1; i < len(all); i++ {
			require.False(t, all[i].CreatedAt.After(all[i-1].CreatedAt), "newest first")
		}

		byStatus, err := store.RunList(b.ctx, b.pool, store.RunListParams{Status: string(vocab.RunCancelled)})
		require.NoError(t, err)
		require.Len(t, byStatus, 1)
		require.Equal(t, other.ID, byStatus[0].ID)

		byWorkflow, err := store.RunList(b.ctx, b.pool, store.RunListParams{Workflow: "w", Status: string(vocab.RunQueued)})
		require.NoError(t, err)
		require.Len(t, byWorkflow, 5)
		for _, r := range byWorkflow {
			require.Contains(t, ids, r.ID)
		}

		byKey, err := store.RunList(b.ctx, b.pool, store.RunListParams{BusinessKey: "order_3"})
		require.NoError(t, err)
		require.Len(t, byKey, 1)
		none, err := store.RunList(b.ctx, b.pool, store.RunListParams{BusinessKey: "order%"})
		require.NoError(t, err)
		require.Empty(t, none, "a % in the key is a literal, not a wildcard")
		underscore, err := store.RunList(b.ctx, b.pool, store.RunListParams{BusinessKey: "order_"})
		require.NoError(t, err)
		require.Len(t, underscore, 5)

		var paged []string
		p := store.RunListParams{Limit: 2}
		for {
			page, err := store.RunList(b.ctx, b.pool, p)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			for _, r := range page {
				paged = append(paged, r.ID)
			}
			last := page[len(page)-1]
			p.AfterTime, p.AfterID = &last.CreatedAt, last.ID
		}
		require.Len(t, paged, 6)
		for i, r := range all {
			require.Equal(t, r.ID, paged[i])
		}
	})
}

func TestRequest(t *testing.T) {
	t.Parallel()

	t.Run("InsertGetAndDecideOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		run := b.run(t, "w")
		r := b.request(t, run, 0, requestOpts{})
		require.Equal(t, vocab.RequestPending, r.Status)
		require.Equal(t, []vocab.Role{}, r.Roles)
		require.Nil(t, r.DecidedAt)

		got, err := store.RequestGet(b.ctx, b.pool, r.ID)
		require.NoError(t, err)
		require.Equal(t, r, got)

		_, err = store.RequestDecide(b.ctx, b.pool, r.ID, "other-hash", string(vocab.RequestApproved), "ann")
		require.ErrorIs(t, err, store.ErrNotFound, "a changed payload is not decided")
		won, err := store.RequestDecide(b.ctx, b.pool, r.ID, "h", string(vocab.RequestApproved), "ann")
		require.NoError(t, err)
		require.Equal(t, vocab.RequestApproved, won.Status)
		require.Equal(t, "ann", *won.DecidedBy)
		require.NotNil(t, won.DecidedAt)
		_, err = store.RequestDecide(b.ctx, b.pool, r.ID, "h", string(vocab.RequestRejected), "bob")
		require.ErrorIs(t, err, store.ErrNotFound, "only one decision wins")
	})

	t.Run("AutoIsDecidedAsMade", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		run := b.run(t, "w")
		policy := "policy"
		r, err := store.RequestInsert(b.ctx, b.pool, &store.Request{RunID: run.ID, Workflow: "w", Tier: "auto",
			Status: vocab.RequestApproved, ActionKind: "a", Summary: "s", Action: json.RawMessage(`{}`), PayloadHash: "h",
			PolicyVersion: 1, Rule: "r", Reason: "r", ApprovalsRequired: 1, StartedBy: "t", DecidedBy: &policy})
		require.NoError(t, err)
		require.NotNil(t, r.DecidedAt)
		auto, err := store.RequestListAuto(b.ctx, b.pool, 10)
		require.NoError(t, err)
		require.Len(t, auto, 1)
		require.Equal(t, r.ID, auto[0].ID)
	})

	t.Run("ListCancelAndVotes", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		run := b.run(t, "w")
		first := b.request(t, run, 0, requestOpts{})
		second := b.request(t, run, 1, requestOpts{Tier: "batched"})

		byRun, err := store.RequestListByRun(b.ctx, b.pool, run.ID)
		require.NoError(t, err)
		require.Equal(t, []string{first.ID, second.ID}, []string{byRun[0].ID, byRun[1].ID})
		batched, err := store.RequestList(b.ctx, b.pool, store.RequestListParams{Tier: "batched"})
		require.NoError(t, err)
		require.Len(t, batched, 1)
		require.Equal(t, second.ID, batched[0].ID)
		page, err := store.RequestList(b.ctx, b.pool, store.RequestListParams{Limit: 1})
		require.NoError(t, err)
		require.Len(t, page, 1)
		rest, err := store.RequestList(b.ctx, b.pool, store.RequestListParams{AfterTime: &page[0].CreatedAt, AfterID: page[0].ID})
		require.NoError(t, err)
		require.Len(t, rest, 1)
		require.NotEqual(t, page[0].ID, rest[0].ID)

		votes, err := store.VoteList(b.ctx, b.pool, first.ID)
		require.NoError(t, err)
		require.Equal(t, []string{}, votes)
		n, err := store.VoteAdd(b.ctx, b.pool, first.ID, "ann", "")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		n, err = store.VoteAdd(b.ctx, b.pool, first.ID, "ann", "again")
		require.NoError(t, err)
		require.Equal(t, 1, n, "one vote per approver")
		n, err = store.VoteAdd(b.ctx, b.pool, first.ID, "bob", "")
		require.NoError(t, err)
		require.Equal(t, 2, n)
		timed, err := store.VoteListTimed(b.ctx, b.pool, first.ID)
		require.NoError(t, err)
		require.Len(t, timed, 2)
		require.Equal(t, []string{"ann", "bob"}, []string{timed[0].Actor, timed[1].Actor}, "oldest first")
		require.False(t, timed[0].At.IsZero())
		require.False(t, timed[1].At.Before(timed[0].At))

		counts, err := store.RequestCountPending(b.ctx, b.pool)
		require.NoError(t, err)
		require.Equal(t, []store.TierCount{{Tier: "explicit", Count: 1}, {Tier: "batched", Count: 1}}, counts)

		require.NoError(t, store.RequestCancelForRun(b.ctx, b.pool, run.ID, "ann"))
		pending, err := store.RequestList(b.ctx, b.pool, store.RequestListParams{Status: string(vocab.RequestPending)})
		require.NoError(t, err)
		require.Empty(t, pending)
	})
}

func TestInbox(t *testing.T) {
	t.Parallel()

	t.Run("OrderAndPages", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		run := b.run(t, "w")
		soon, later := time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
		batchedSoon := b.request(t, run, 0, requestOpts{Tier: "batched", Deadline: &soon})
		explicitNone := b.request(t, run, 1, requestOpts{})
		explicitLater := b.request(t, run, 2, requestOpts{Deadline: &later})
		explicitSoon := b.request(t, run, 3, requestOpts{Deadline: &soon, Rule: "other"})
		escalated := b.request(t, run, 4, requestOpts{Tier: "batched"})
		ok, err := store.RequestEscalate(b.ctx, b.pool, escalated.ID, "late")
		require.NoError(t, err)
		require.True(t, ok)
		decided := b.request(t, run, 5, requestOpts{})
		_, err = store.RequestDecide(b.ctx, b.pool, decided.ID, "h", string(vocab.RequestApproved), "ann")
		require.NoError(t, err)

		want := []string{escalated.ID, explicitSoon.ID, explicitLater.ID, explicitNone.ID, batchedSoon.ID}
		var got []string
		p := store.InboxParams{Limit: 2, Now: time.Now()}
		for {
			page, err := store.RequestListInbox(b.ctx, b.pool, p)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			for _, row := range page {
				got = append(got, row.Request.ID)
			}
			p.After = &page[len(page)-1].Cursor
		}
		require.Equal(t, want, got, "escalated, explicit, batched; by deadline, none last")

		byRule, err := store.RequestListInbox(b.ctx, b.pool, store.InboxParams{Rule: "other", Now: time.Now()})
		require.NoError(t, err)
		require.Len(t, byRule, 1)
		require.Equal(t, explicitSoon.ID, byRule[0].Request.ID)
		byTier, err := store.RequestListInbox(b.ctx, b.pool, store.InboxParams{Tier: "batched", Now: time.Now()})
		require.NoError(t, err)
		require.Len(t, byTier, 2)
		old, err := store.RequestListInbox(b.ctx, b.pool, store.InboxParams{OlderThan: time.Hour, Now: time.Now()})
		require.NoError(t, err)
		require.Empty(t, old)
	})

	t.Run("UsesIndex", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		run := b.run(t, "w")
		// Enough rows that a sorted walk of the index beats reading the table.
		_, err := b.pool.Exec(b.ctx, `INSERT INTO approval_requests (run_id, step_seq, workflow, tier, action_kind,
				summary, action, payload_hash, policy_version, rule, reason, deadline)
			SELECT $1, n, 'w', CASE WHEN n % 3 = 0 THEN 'explicit' ELSE 'batched' END, 'a', 's', '{}', 'h', 1, 'r', 'r',
				CASE WHEN n % 2 = 0 THEN now() + n * interval '1 minute' END
			FROM generate_series(1, 5000) n`, run.ID)
		require.NoError(t, err)
		_, err = b.pool.Exec(b.ctx, `ANALYZE approval_requests`)
		require.NoError(t, err)

		rows, err := store.RequestListInbox(b.ctx, b.pool, store.InboxParams{Limit: 50, Now: time.Now()})
		require.NoError(t, err)
		require.Len(t, rows, 50)
		// "I can decide" is among the cases: it walks the reviewer's index,
		// and its per-row checks (starter, an earlier vote) must not turn the
		// walk into a sort.
		for _, c := range []struct {
			mode      string
			after     *store.InboxCursor
			canDecide bool
		}{{"force_custom_plan", nil, false}, {"force_custom_plan", &rows[49].Cursor, false}, {"force_generic_plan", nil, false},
			{"force_generic_plan", &rows[49].Cursor, false}, {"force_custom_plan", nil, true}, {"force_generic_plan", &rows[49].Cursor, true}} {
			p := store.InboxParams{Actor: "ann@example.com", ActorRole: vocab.RoleReviewer, CanDecide: c.canDecide, After: c.after}
			rank := 1
			if c.after != nil {
				rank = c.after.Rank
			}
			query, args := store.InboxListQuery(p, nil, rank, 50)
			var plan string
			err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(b.ctx, "SET LOCAL plan_cache_mode = "+c.mode); err != nil {
					return err
				}
				rows, err := tx.Query(b.ctx, "EXPLAIN (FORMAT TEXT) "+query, args)
				if err != nil {
					return err
				}
				lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
				plan = strings.Join(lines, "\n")
				return err
			})
			require.NoError(t, err)
			index := "approval_requests_inbox" // the reviewer's own with "I can decide" (migration 00034)
			if c.canDecide {
				index = "approval_requests_inbox_can_reviewer"
			}
			require.Contains(t, plan, "Index Scan using "+index+" ", "%s, cursor %v", c.mode, c.after)
			require.Contains(t, plan, "Index Cond", "%s: the index is sought to the cursor", c.mode)
			require.NotContains(t, plan, "Sort", "%s: the index gives the order", c.mode)
		}
	})
}

// statuses spells run statuses as the store's from-lists take them.
func statuses(ss ...vocab.RunStatus) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}
