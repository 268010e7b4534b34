package ask_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// fakeCallbacks records what the callback step enqueues.
type fakeCallbacks struct {
	mu   sync.Mutex
	sent []callback.Delivery
}

func (f *fakeCallbacks) Check(raw string) error {
	if strings.Contains(raw, "127.0.0.1") {
		return errors.New("loopback addresses are refused")
	}
	return nil
}

func (f *fakeCallbacks) Enqueue(_ context.Context, _ pgx.Tx, d callback.Delivery) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, d)
	return int64(len(f.sent)), nil
}

func (f *fakeCallbacks) List(_ context.Context, subject string) ([]callback.Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []callback.Record
	for i, d := range f.sent {
		if d.Subject == subject {
			out = append(out, callback.Record{ID: int64(i + 1), Subject: d.Subject, Event: d.Event, URL: d.URL, Status: "pending"})
		}
	}
	return out, nil
}

func (f *fakeCallbacks) about(subject string) []callback.Delivery {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []callback.Delivery
	for _, d := range f.sent {
		if d.Subject == subject {
			out = append(out, d)
		}
	}
	return out
}

// fakeReceipts signs nothing: it names the request it was asked about and
// counts the calls, to show who causes a signature.
type fakeReceipts struct{ calls *atomic.Int64 }

func (f fakeReceipts) ForRequest(_ context.Context, approvalID, requestID string) (*receipt.Receipt, error) {
	f.calls.Add(1)
	return &receipt.Receipt{KeyID: "test", Claims: receipt.Claims{ApprovalID: approvalID, RequestID: requestID}}, nil
}

type env struct {
	*testapp.Bundle
	svc       *ask.Service
	callbacks *fakeCallbacks
	receipts  *atomic.Int64 // receipts asked for
	clock     *atomic.Int64 // offset of the engine's clock, in nanoseconds
	agent     ask.Caller    // a reviewer's approvals:write token
	approver  workflow.Actor
}

func start(t *testing.T) *env {
	t.Helper()
	e := &env{callbacks: &fakeCallbacks{}, receipts: &atomic.Int64{}, clock: &atomic.Int64{}}
	now := func() time.Time { return time.Now().Add(time.Duration(e.clock.Load())) }
	e.Bundle = testapp.Start(t, testapp.Options{Callbacks: e.callbacks, Receipts: fakeReceipts{calls: e.receipts}, Now: now,
		PublicURL: "https://cs.example"})
	e.svc = e.App.Ask
	ctx := context.Background()
	_, err := policystore.Apply(ctx, e.Pool, policy.Example, "setup")
	require.NoError(t, err)
	e.App.Policies.Invalidate()
	u, err := account.Create(ctx, e.Pool, "agent@example.com", "Agent", "reviewer", "correct horse battery", "setup")
	require.NoError(t, err)
	e.agent = ask.Caller{UserID: u.ID, Email: u.Email, Role: u.Role, TokenID: "cs_00000001", Scopes: []string{account.ScopeApprovalsWrite}}
	e.approver = workflow.Actor{Name: "approver@example.com", Roles: []vocab.Role{vocab.RoleApprover}}
	return e
}

func refund(amount float64) workflow.Action {
	return workflow.Action{Kind: "payment.refund", Target: "order 1042", Summary: "Refund to ada@example.com",
		Params: map[string]any{"amount": amount}, Risk: "low", Reversible: true}
}

// decide decides the approval's request as the approver.
func (e *env) decide(t *testing.T, a *ask.Approval, verdict vocab.Verdict, reason string, edited map[string]any) {
	t.Helper()
	req, err := store.RequestGet(context.Background(), e.Pool, a.RequestID)
	require.NoError(t, err)
	_, err = e.Engine.Decide(context.Background(), workflow.DecideParams{RequestID: req.ID, Actor: e.approver,
		Verdict: verdict, Reason: reason, PayloadHash: req.PayloadHash, EditedParams: edited})
	require.NoError(t, err)
}

func TestSubmit(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()

	t.Run("RejectedSendsCallback", func(t *testing.T) {
		a, created, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "rej-1", Action: refund(20),
			CallbackURL: "https://agent.example/hook", Context: json.RawMessage(`{"session":"s1","agent":"bot"}`)})
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, ask.StatusPending, a.Status)
		require.Equal(t, "refund", a.Rule)
		require.Equal(t, "https://cs.example/requests/"+a.RequestID, a.ReviewURL)
		require.JSONEq(t, `{"agent":"bot","session":"s1"}`, string(a.Context))
		require.NotNil(t, a.Deadline, "the refund rule has a deadline")
		require.Empty(t, e.callbacks.about(a.ID), "nothing is sent before the decision")

		e.decide(t, a, vocab.VerdictReject, "not this customer", nil)
		got, err := e.svc.Get(ctx, e.agent, a.ID, 5*time.Second)
		require.NoError(t, err)
		require.Equal(t, ask.StatusRejected, got.Status)
		require.Equal(t, "not this customer", got.Outcome.Reason)
		require.NotNil(t, got.Receipt)
		require.Equal(t, a.RequestID, got.Receipt.Claims.RequestID)

		run := e.WaitRun(t, a.ID, vocab.RunCompleted)
		require.Equal(t, vocab.RunCompleted, run.Status, "the workflow took the rejection and sent its callback")
		sent := e.callbacks.about(a.ID)
		require.Len(t, sent, 1)
		require.Equal(t, ask.EventDecided, sent[0].Event)
		require.Equal(t, "cs_00000001", sent[0].TokenID)
		var body ask.Approval
		require.NoError(t, json.Unmarshal(sent[0].Body, &body))
		require.Equal(t, ask.StatusRejected, body.Status)
		require.Equal(t, "reject", body.Outcome.Verdict)

		got, err = e.svc.Get(ctx, e.agent, a.ID, 0)
		require.NoError(t, err)
		require.Len(t, got.Callback.Deliveries, 1, "the approval lists its deliveries")
	})

	t.Run("EditExecutesEditedParams", func(t *testing.T) {
		a, _, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "edit-1", Action: refund(30)})
		require.NoError(t, err)
		e.decide(t, a, vocab.VerdictEdit, "", map[string]any{"amount": 25.0})
		got, err := e.svc.Get(ctx, e.agent, a.ID, 5*time.Second)
		require.NoError(t, err)
		require.Equal(t, ask.StatusApproved, got.Status)
		require.Equal(t, "edit", got.Outcome.Verdict)
		require.Equal(t, map[string]any{"amount": json.Number("25")}, got.Outcome.Params, "numbers as written")
		require.NotEqual(t, workflow.PayloadHash(mustJSON(t, refund(30))), got.Outcome.PayloadHash, "the hash is the edited action's")
		e.WaitRun(t, a.ID, vocab.RunCompleted)
	})

	t.Run("DeadlineRejectionReachesTheWorkflow", func(t *testing.T) {
		a, _, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "late-1", Action: refund(40),
			CallbackURL: "https://agent.example/hook"})
		require.NoError(t, err)
		require.Equal(t, ask.StatusPending, a.Status)
		e.clock.Add(int64(25 * time.Hour))
		t.Cleanup(func() { e.clock.Add(-int64(25 * time.Hour)) })
		_, err = e.Engine.Expire(ctx, a.RequestID)
		require.NoError(t, err)
		run := e.WaitRun(t, a.ID, vocab.RunCompleted, vocab.RunRejected)
		require.Equal(t, vocab.RunCompleted, run.Status, "the deadline's rejection resumed the run")
		got, err := e.svc.Get(ctx, e.agent, a.ID, 0)
		require.NoError(t, err)
		require.Equal(t, ask.StatusRejected, got.Status)
		require.Equal(t, "policy:refund", got.Outcome.DecidedBy)
		require.Len(t, e.callbacks.about(a.ID), 1)
	})

	t.Run("SameKeySameApproval", func(t *testing.T) {
		sub := ask.Submission{IdempotencyKey: "same-1", Action: refund(10), Context: json.RawMessage(`{"a":1,"b":2}`)}
		a, created, err := e.svc.Submit(ctx, e.agent, sub)
		require.NoError(t, err)
		require.True(t, created)
		// The same body with its context's keys in another order is the same body.
		sub.Context = json.RawMessage(`{ "b": 2, "a": 1 }`)
		again, created, err := e.svc.Submit(ctx, e.agent, sub)
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, a.ID, again.ID)

		sub.Action = refund(11)
		_, _, err = e.svc.Submit(ctx, e.agent, sub)
		require.ErrorIs(t, err, ask.ErrIdempotencyConflict)

		// Another user's same key is another approval.
		u, err := account.Create(ctx, e.Pool, "other@example.com", "Other", "reviewer", "correct horse battery", "setup")
		require.NoError(t, err)
		other, created, err := e.svc.Submit(ctx, ask.Caller{UserID: u.ID, Email: u.Email, Role: u.Role, Scopes: []string{account.ScopeApprovalsWrite}},
			ask.Submission{IdempotencyKey: "same-1", Action: refund(10)})
		require.NoError(t, err)
		require.True(t, created)
		require.NotEqual(t, a.ID, other.ID)
		_, err = e.svc.Get(ctx, ask.Caller{UserID: u.ID, Role: u.Role, Scopes: []string{account.ScopeApprovalsWrite}}, a.ID, 0)
		require.ErrorIs(t, err, store.ErrNotFound, "approvals:write reads only its user's approvals")
		_, err = e.svc.Get(ctx, ask.Caller{UserID: u.ID, Role: u.Role, Scopes: []string{account.ScopeRequestsRead}}, a.ID, 0)
		require.NoError(t, err, "requests:read reads any")
	})

	t.Run("UnauthorizedReadSignsNothing", func(t *testing.T) {
		a, _, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "authz-1", Action: refund(12)})
		require.NoError(t, err)
		e.decide(t, a, vocab.VerdictReject, "no", nil)
		u, err := account.Create(ctx, e.Pool, "stranger@example.com", "Stranger", "reviewer", "correct horse battery", "setup")
		require.NoError(t, err)
		stranger := ask.Caller{UserID: u.ID, Role: u.Role, TokenID: "cs_00000002", Scopes: []string{account.ScopeApprovalsWrite}}
		before := e.receipts.Load()
		_, err = e.svc.Get(ctx, stranger, a.ID, 0)
		require.ErrorIs(t, err, store.ErrNotFound)
		require.Equal(t, before, e.receipts.Load(), "a refused read builds nothing, so signs no receipt")
		got, err := e.svc.Get(ctx, e.agent, a.ID, 0)
		require.NoError(t, err)
		require.NotNil(t, got.Receipt)
		require.Greater(t, e.receipts.Load(), before, "the filer's read signs")
	})

	t.Run("Refused", func(t *testing.T) {
		viewer := ask.Caller{UserID: e.agent.UserID, Email: "viewer@example.com", Role: vocab.RoleViewer, Scopes: []string{account.ScopeApprovalsWrite}}
		noScope := e.agent
		noScope.Scopes = []string{account.ScopeRunsWrite}
		long := strings.Repeat("k", ask.MaxKey+1)
		for _, tc := range []struct {
			name   string
			caller ask.Caller
			sub    ask.Submission
			want   error
		}{
			{"Viewer", viewer, ask.Submission{IdempotencyKey: "v-1", Action: refund(1)}, workflow.ErrForbidden},
			{"NoScope", noScope, ask.Submission{IdempotencyKey: "v-2", Action: refund(1)}, workflow.ErrForbidden},
			{"NoKey", e.agent, ask.Submission{Action: refund(1)}, ask.ErrBadRequest},
			{"LongKey", e.agent, ask.Submission{IdempotencyKey: long, Action: refund(1)}, ask.ErrBadRequest},
			{"NoSummary", e.agent, ask.Submission{IdempotencyKey: "v-3", Action: workflow.Action{Kind: "x"}}, ask.ErrBadRequest},
			{"BadRisk", e.agent, ask.Submission{IdempotencyKey: "v-4", Action: workflow.Action{Kind: "x", Summary: "y", Risk: "extreme"}}, ask.ErrBadRequest},
			{"ContextNotObject", e.agent, ask.Submission{IdempotencyKey: "v-5", Action: refund(1), Context: json.RawMessage(`[1]`)}, ask.ErrBadRequest},
			{"ContextTooLarge", e.agent, ask.Submission{IdempotencyKey: "v-6", Action: refund(1),
				Context: json.RawMessage(`{"x":"` + strings.Repeat("a", ask.MaxContext) + `"}`)}, ask.ErrTooLarge},
			{"ActionTooLarge", e.agent, ask.Submission{IdempotencyKey: "v-7", Action: workflow.Action{Kind: "x", Summary: "y",
				Rationale: strings.Repeat("a", workflow.DefaultMaxStepOutput)}}, ask.ErrTooLarge},
			{"CallbackWithoutToken", ask.Caller{UserID: e.agent.UserID, Email: e.agent.Email, Role: e.agent.Role},
				ask.Submission{IdempotencyKey: "v-10", Action: refund(1), CallbackURL: "https://agent.example/hook"}, ask.ErrBadRequest},
			{"PrivateCallback", e.agent, ask.Submission{IdempotencyKey: "v-8", Action: refund(1), CallbackURL: "http://127.0.0.1/x"}, ask.ErrBadRequest},
			{"RevisesNothing", e.agent, ask.Submission{IdempotencyKey: "v-9", Action: refund(1), Revises: "00000000-0000-0000-0000-000000000000"}, ask.ErrRevision},
		} {
			t.Run(tc.name, func(t *testing.T) {
				runs, err := store.RunList(ctx, e.Pool, store.RunListParams{Workflow: ask.Workflow, Limit: 200})
				require.NoError(t, err)
				events, err := store.AuditList(ctx, e.Pool, store.AuditFilter{}, 0, 1000)
				require.NoError(t, err)
				_, _, err = e.svc.Submit(ctx, tc.caller, tc.sub)
				require.ErrorIs(t, err, tc.want)
				after, err := store.RunList(ctx, e.Pool, store.RunListParams{Workflow: ask.Workflow, Limit: 200})
				require.NoError(t, err)
				require.Len(t, after, len(runs), "a refused submission starts no run")
				eventsAfter, err := store.AuditList(ctx, e.Pool, store.AuditFilter{}, 0, 1000)
				require.NoError(t, err)
				require.Len(t, eventsAfter, len(events), "and appends no audit event")
			})
		}
	})
}

// TestSubmitCallbackNeedsAToken: a callback is signed with the filing
// token's secret, so a caller without a token (a console session) cannot ask
// for one.
func TestSubmitCallbackNeedsAToken(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{NoWorker: true})
	u, err := account.Create(context.Background(), b.Pool, "agent@example.com", "Agent", "reviewer", "correct horse battery", "setup")
	require.NoError(t, err)
	_, _, err = b.App.Ask.Submit(context.Background(), ask.Caller{UserID: u.ID, Email: u.Email, Role: u.Role},
		ask.Submission{IdempotencyKey: "k", Action: refund(1), CallbackURL: "https://agent.example/hook"})
	require.ErrorIs(t, err, ask.ErrBadRequest)
	require.ErrorContains(t, err, "a callback needs an API token")
}

// TestRevisions: changes requested, then a revision that names it.
func TestRevisions(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	first, _, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "rev-1", Action: refund(60)})
	require.NoError(t, err)

	_, _, err = e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "rev-early", Action: refund(50), Revises: first.ID})
	require.ErrorIs(t, err, ask.ErrNotRevisable, "a pending approval cannot be revised")

	e.decide(t, first, vocab.VerdictRequestChanges, "refund 50, not 60", nil)
	got, err := e.svc.Get(ctx, e.agent, first.ID, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, ask.StatusChangesRequested, got.Status)
	require.Equal(t, "refund 50, not 60", got.Outcome.Reason)
	e.WaitRun(t, first.ID, vocab.RunCompleted)

	second, created, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "rev-2", Action: refund(50), Revises: first.ID})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, first.ID, second.Revises)
	require.Equal(t, 1, second.Revision)

	chain, err := e.svc.Revisions(ctx, second.ID)
	require.NoError(t, err)
	require.Len(t, chain, 1)
	require.Equal(t, first.ID, chain[0].ID)
	require.Equal(t, "refund 50, not 60", chain[0].Feedback)

	// Someone else cannot revise it.
	u, err := account.Create(ctx, e.Pool, "other@example.com", "Other", "reviewer", "correct horse battery", "setup")
	require.NoError(t, err)
	_, _, err = e.svc.Submit(ctx, ask.Caller{UserID: u.ID, Email: u.Email, Role: u.Role}, ask.Submission{IdempotencyKey: "rev-3", Action: refund(50), Revises: first.ID})
	require.ErrorIs(t, err, ask.ErrRevision)
}

// TestAbandonedInlineExecution: a process that claimed a new approval to
// execute it inline and died leaves it to the sweeper, which hands it to River.
func TestAbandonedInlineExecution(t *testing.T) {
	t.Parallel()
	rec := app.Recovery{Lease: time.Second, RenewEvery: 300 * time.Millisecond, SweepEvery: 200 * time.Millisecond}
	dead := testapp.Start(t, testapp.Options{NoWorker: true, Recovery: rec})
	ctx := context.Background()
	input, err := json.Marshal(ask.Input{Action: workflow.Action{Kind: "search", Summary: "Look up 1042"}, IdempotencyKey: "k", UserID: 1})
	require.NoError(t, err)
	// As the approvals service starts it (StartParams.Internal).
	run, _, err := dead.Engine.Start(ctx, workflow.StartParams{Workflow: ask.Workflow, BusinessKey: "abandoned", Input: input, StartedBy: "agent", Internal: true})
	require.NoError(t, err)
	// An inline execution's claim; then the process "dies" without a step.
	_, err = store.RunClaim(ctx, dead.Pool, run.ID, 0, []string{"queued"}, "00000000-0000-0000-0000-0000000000de", time.Second)
	require.NoError(t, err)

	live := testapp.StartOn(t, dead.Pool, dead.URL, testapp.Options{Recovery: rec})
	done := live.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	require.GreaterOrEqual(t, done.Recoveries, 1, "the sweeper handed the run on")
	a, err := live.App.Ask.Get(ctx, ask.Caller{Role: vocab.RoleAdmin}, run.ID, 0)
	require.NoError(t, err)
	require.Equal(t, ask.StatusPending, a.Status, "no policy: the fail-safe explicit tier")
	require.NotEmpty(t, a.RequestID)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	return raw
}

// TestLongPollBound: one caller holds at most DefaultMaxWaitsPerCaller long
// polls at once; the next is answered at once, as the approval stands,
// while another caller still waits.
func TestLongPollBound(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	a, _, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "poll-1", Action: refund(20)})
	require.NoError(t, err)
	require.Equal(t, ask.StatusPending, a.Status)

	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var open atomic.Int32
	for range ask.DefaultMaxWaitsPerCaller {
		wg.Add(1)
		go func() {
			defer wg.Done()
			open.Add(1)
			_, _ = e.svc.Get(wctx, e.agent, a.ID, time.Minute)
			open.Add(-1)
		}()
	}
	require.Eventually(t, func() bool { return open.Load() == ask.DefaultMaxWaitsPerCaller }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // let them all reach the wait

	began := time.Now()
	got, err := e.svc.Get(ctx, e.agent, a.ID, time.Minute)
	require.NoError(t, err)
	require.Equal(t, ask.StatusPending, got.Status)
	require.Less(t, time.Since(began), 2*time.Second, "over the caller's bound the poll does not wait")

	// Another token of the same user is another caller: it waits.
	other := e.agent
	other.TokenID = "cs_00000009"
	octx, ocancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer ocancel()
	began = time.Now()
	_, err = e.svc.Get(octx, other, a.ID, time.Minute)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(began), 600*time.Millisecond, "another caller's poll waits")

	cancel()
	wg.Wait()
	began = time.Now()
	sctx, scancel := context.WithTimeout(ctx, 700*time.Millisecond)
	defer scancel()
	_, err = e.svc.Get(sctx, e.agent, a.ID, time.Minute)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(began), 600*time.Millisecond, "finished polls give their slots back")
}

// TestInlineApproval: a new approval runs in the caller's goroutine, born
// claimed, without a River job: an auto-tier one answers approved with its
// receipt, and its run completes with the decision as output.
func TestInlineApproval(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	a, created, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "inline-1",
		Action: workflow.Action{Kind: "search", Summary: "Look up order 1042"}})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, ask.StatusApproved, a.Status, "the policy approves read-only lookups")
	require.Equal(t, "read-only", a.Rule)
	require.NotNil(t, a.Receipt)
	require.Equal(t, a.RequestID, a.Receipt.Claims.RequestID)

	run := e.WaitRun(t, a.ID, vocab.RunCompleted)
	require.Equal(t, 1, run.Attempt, "claimed once, by the inline execution")
	require.Zero(t, run.Recoveries)
	var out ask.Output
	require.NoError(t, json.Unmarshal(run.Output, &out))
	require.Equal(t, a.RequestID, out.Decision.RequestID)
	var jobs int
	require.NoError(t, e.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'workflow_run' AND args->>'run_id' = $1`, a.ID).Scan(&jobs))
	require.Zero(t, jobs, "no job was inserted for a run that ended inline")
	var started int
	require.NoError(t, e.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE run_id = $1 AND kind = 'run.started'
		AND subject_type = 'run' AND subject_id = $1::text AND actor = $2 AND details->>'workflow' = $3`, a.ID, e.agent.Email, ask.Workflow).Scan(&started))
	require.Equal(t, 1, started, "the start's statement recorded run.started")

	// The same key and body: the same approval, nothing started again.
	again, created, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "inline-1",
		Action: workflow.Action{Kind: "search", Summary: "Look up order 1042"}})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, a.ID, again.ID)
	require.Equal(t, ask.StatusApproved, again.Status)

	// An explicit one parks for a human, still without a job.
	p, _, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "inline-2", Action: refund(20)})
	require.NoError(t, err)
	require.Equal(t, ask.StatusPending, p.Status)
	got, err := store.RunGet(ctx, e.Pool, p.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunWaitingHuman, got.Status)
	require.Nil(t, got.LeaseOwner, "parking gave the lease up")
}

// TestAbandonedBornClaimedRun: a process that started an approval born
// claimed (StartInline) and died before executing it leaves a running run
// with no job; once its lease lapses the sweeper hands it to River.
func TestAbandonedBornClaimedRun(t *testing.T) {
	t.Parallel()
	rec := app.Recovery{Lease: time.Second, RenewEvery: 300 * time.Millisecond, SweepEvery: 200 * time.Millisecond}
	dead := testapp.Start(t, testapp.Options{NoWorker: true, Recovery: rec})
	ctx := context.Background()
	input, err := json.Marshal(ask.Input{Action: workflow.Action{Kind: "search", Summary: "Look up 1042"}, IdempotencyKey: "k", UserID: 1})
	require.NoError(t, err)
	run, created, inline, err := dead.Engine.StartInline(ctx, workflow.StartParams{Workflow: ask.Workflow, BusinessKey: "born-claimed",
		Input: input, StartedBy: "agent", Internal: true})
	require.NoError(t, err)
	require.True(t, created)
	require.NotNil(t, inline)
	require.Equal(t, vocab.RunRunning, run.Status, "born claimed")
	// The process "dies" here, before inline.Execute.

	live := testapp.StartOn(t, dead.Pool, dead.URL, testapp.Options{Recovery: rec})
	done := live.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	require.GreaterOrEqual(t, done.Recoveries, 1, "the sweeper handed the run on")
	a, err := live.App.Ask.Get(ctx, ask.Caller{Role: vocab.RoleAdmin}, run.ID, 0)
	require.NoError(t, err)
	require.Equal(t, ask.StatusPending, a.Status, "no policy: the fail-safe explicit tier")

	_, created, inline, err = live.Engine.StartInline(ctx, workflow.StartParams{Workflow: ask.Workflow, BusinessKey: "born-claimed",
		Input: input, StartedBy: "agent", Internal: true})
	require.NoError(t, err)
	require.False(t, created, "the business key names the run")
	require.Nil(t, inline)
	_, _, _, err = live.Engine.StartInline(ctx, workflow.StartParams{Workflow: ask.Workflow, BusinessKey: "x", Input: input})
	require.ErrorIs(t, err, workflow.ErrInvalidInput, "an internal workflow starts only from its service")
}

// TestInProcessWake: a change committed in this process reaches its
// waiters when the call that committed it returns, not when PostgreSQL
// delivers the notification: a parked approval is published before Submit
// answers (the open inboxes), a decision before Decide returns (the
// approval's long poll). Each is delivered once, though PostgreSQL
// delivers its notification too.
func TestInProcessWake(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	msgs, stop := e.App.Notify.Subscribe(64)
	t.Cleanup(stop)
	// Nothing may be waiting yet that a later receive would mistake.
	drain := func() []notify.Message {
		var got []notify.Message
		for {
			select {
			case m := <-msgs:
				got = append(got, m)
			default:
				return got
			}
		}
	}
	count := func(got []notify.Message, want notify.Message) int {
		n := 0
		for _, m := range got {
			if m == want {
				n++
			}
		}
		return n
	}

	a, _, err := e.svc.Submit(ctx, e.agent, ask.Submission{IdempotencyKey: "wake-1", Action: refund(20)})
	require.NoError(t, err)
	require.Equal(t, ask.StatusPending, a.Status)
	parked := notify.Message{Type: notify.KindRequest, ID: a.RequestID, RunID: a.ID, Tier: a.Tier}
	got := drain() // no wait: it must be there already
	require.Equal(t, 1, count(got, parked), "the parked approval was published before Submit answered: %v", got)

	e.decide(t, a, vocab.VerdictApprove, "", nil)
	decided := notify.Message{Type: notify.KindDecision, ID: a.RequestID, RunID: a.ID, Status: string(vocab.RequestApproved)}
	got = append(got, drain()...) // no wait either
	require.Equal(t, 1, count(got, decided), "the decision was published before Decide returned: %v", got)

	// PostgreSQL's copies come and are dropped: a message sent after them
	// arrives, and neither was delivered twice.
	require.NoError(t, notify.Send(ctx, e.Pool, notify.Message{Type: notify.KindRun, ID: "marker"}))
	deadline := time.After(10 * time.Second)
	for count(got, notify.Message{Type: notify.KindRun, ID: "marker"}) == 0 {
		select {
		case m := <-msgs:
			got = append(got, m)
		case <-deadline:
			t.Fatalf("the marker never came: %v", got)
		}
	}
	require.Equal(t, 1, count(got, parked))
	require.Equal(t, 1, count(got, decided))
}

// TestSubmitAnswerIsTheApprovalAsRead: the answer to an auto-tier POST,
// built from what the inline execution wrote rather than read back, is
// the approval as a read of it builds it, byte for byte, receipt included
// (signed by the process's real signer), whatever the numbers in the
// action look like as filed.
func TestSubmitAnswerIsTheApprovalAsRead(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{PublicURL: "https://cs.example"})
	ctx := context.Background()
	_, err := policystore.Apply(ctx, b.Pool, policy.Example, "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	u, err := account.Create(ctx, b.Pool, "agent@example.com", "Agent", "reviewer", "correct horse battery", "setup")
	require.NoError(t, err)
	agent := ask.Caller{UserID: u.ID, Email: u.Email, Role: u.Role, TokenID: "cs_00000001", Scopes: []string{account.ScopeApprovalsWrite}}
	var params map[string]any
	dec := json.NewDecoder(strings.NewReader(`{"big": 12345678901234567890, "exp": 1e3, "frac": 1.50, "neg": -0.0,
		"nested": {"z": [1, 2.0, "<&>"], "a": null}, "text": "caf\u00e9 \u2028"}`))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&params))
	for name, action := range map[string]workflow.Action{
		"Plain":   {Kind: "search", Summary: "Look up order 1042"},
		"Numbers": {Kind: "search", Target: "orders", Summary: "Look up orders", Params: params, Risk: "low", EstimatedCost: 0.25},
		"Checks":  {Kind: "search", Summary: "Look up order 1043", Checks: []workflow.Check{{Name: "scope", Passed: true}}},
	} {
		t.Run(name, func(t *testing.T) {
			a, created, err := b.App.Ask.Submit(ctx, agent, ask.Submission{IdempotencyKey: "as-read-" + name, Action: action,
				Context: json.RawMessage(`{"session": "s1", "agent": "bench"}`)})
			require.NoError(t, err)
			require.True(t, created)
			require.Equal(t, ask.StatusApproved, a.Status)
			require.NotNil(t, a.Receipt)
			got, err := b.App.Ask.Get(ctx, agent, a.ID, 0)
			require.NoError(t, err)
			posted, err := json.Marshal(a)
			require.NoError(t, err)
			read, err := json.Marshal(got)
			require.NoError(t, err)
			require.JSONEq(t, string(read), string(posted))
			require.Equal(t, got.Receipt.Payload, a.Receipt.Payload, "the same claims, encoded the same")
			require.Equal(t, got.Receipt.Signature, a.Receipt.Signature)
			_, err = receipt.Verify(*a.Receipt, mustKeys(t, b))
			require.NoError(t, err)
		})
	}
}

func mustKeys(t *testing.T, b *testapp.Bundle) []receipt.PublicKey {
	t.Helper()
	keys, err := b.App.Receipts.Keys(context.Background())
	require.NoError(t, err)
	return keys
}
