// Package factory makes rows for tests: runs, approval requests and users
// with working defaults, each changed through a struct of pointer options
// (River's testfactory), so that a test names only what it is about. Rows
// go in through the store and account functions the application uses;
// failures fail the test.
package factory

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// Password is every factory user's password unless one is given.
const Password = "correct-horse-battery"

var seq atomic.Int64

// next returns a number no other factory call in this process has had,
// for unique defaults (business keys, emails).
func next() int64 { return seq.Add(1) }

func or[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// Ptr returns a pointer to v, for options.
func Ptr[T any](v T) *T { return &v }

// RunOpts change a run's defaults: workflow "factory", a unique business
// key, input {}, started by "factory@example.com", status queued.
type RunOpts struct {
	Workflow    *string
	BusinessKey *string
	Input       json.RawMessage
	StartedBy   *string
	// Status moves the queued run there as one update, without the engine.
	Status *vocab.RunStatus
}

// Run inserts a run. opts may be nil.
func Run(ctx context.Context, tb testing.TB, db store.DBTX, opts *RunOpts) *store.Run {
	tb.Helper()
	if opts == nil {
		opts = &RunOpts{}
	}
	input := opts.Input
	if input == nil {
		input = json.RawMessage(`{}`)
	}
	run, created, err := store.RunInsert(ctx, db, store.RunInsertParams{Workflow: or(opts.Workflow, "factory"),
		BusinessKey: or(opts.BusinessKey, fmt.Sprintf("factory-%d", next())), Input: input,
		StartedBy: or(opts.StartedBy, "factory@example.com")})
	require.NoError(tb, err)
	require.True(tb, created, "a run with this workflow and business key exists")
	if opts.Status != nil && *opts.Status != run.Status {
		require.NoError(tb, store.RunSetStatus(ctx, db, run.ID, []string{string(run.Status)}, string(*opts.Status)))
		run, err = store.RunGet(ctx, db, run.ID)
		require.NoError(tb, err)
	}
	return run
}

// RequestOpts change a request's defaults: a new run waiting for a human,
// step 0, a pending explicit request for one approval by any role under
// rule "factory", proposing Action (default: kind "factory.act").
type RequestOpts struct {
	Run               *store.Run
	StepSeq           *int
	Tier              *vocab.Tier
	Status            *vocab.RequestStatus
	Action            *workflow.Action
	Rule              *string
	Reason            *string
	PolicyVersion     *int
	ApprovalsRequired *int
	Roles             []vocab.Role
	Deadline          *time.Time
	OnTimeout         *string
	BatchKey          *string
}

// Request inserts an approval request; its payload hash is that of its
// action, as the engine computes it. opts may be nil.
func Request(ctx context.Context, tb testing.TB, db store.DBTX, opts *RequestOpts) *store.Request {
	tb.Helper()
	if opts == nil {
		opts = &RequestOpts{}
	}
	run := opts.Run
	if run == nil {
		run = Run(ctx, tb, db, &RunOpts{Status: Ptr(vocab.RunWaitingHuman)})
	}
	action := or(opts.Action, workflow.Action{Kind: "factory.act", Summary: "Do the factory thing",
		Params: map[string]any{"n": 1}, Risk: "low"})
	raw, err := json.Marshal(action)
	require.NoError(tb, err)
	status := or(opts.Status, vocab.RequestPending)
	r := &store.Request{RunID: run.ID, StepSeq: or(opts.StepSeq, 0), Workflow: run.Workflow,
		Tier: or(opts.Tier, vocab.TierExplicit), Status: status, ActionKind: action.Kind, Summary: action.Summary,
		Action: raw, PayloadHash: workflow.PayloadHash(raw), PolicyVersion: or(opts.PolicyVersion, 1),
		Rule: or(opts.Rule, "factory"), Reason: or(opts.Reason, "made by the test factory"),
		ApprovalsRequired: or(opts.ApprovalsRequired, 1), Roles: opts.Roles, Deadline: opts.Deadline,
		OnTimeout: or(opts.OnTimeout, ""), BatchKey: or(opts.BatchKey, ""), StartedBy: run.StartedBy}
	if status != vocab.RequestPending {
		r.DecidedBy = Ptr("factory")
	}
	saved, err := store.RequestInsert(ctx, db, r)
	require.NoError(tb, err)
	return saved
}

// UserOpts change a user's defaults: a unique email, name "Factory User",
// role reviewer, password Password.
type UserOpts struct {
	Email    *string
	Name     *string
	Role     *string
	Password *string
}

// User creates a user through account.Create, as the CLI does. opts may be nil.
func User(ctx context.Context, tb testing.TB, pool *pgxpool.Pool, opts *UserOpts) *store.User {
	tb.Helper()
	if opts == nil {
		opts = &UserOpts{}
	}
	u, err := account.Create(ctx, pool, or(opts.Email, fmt.Sprintf("user%d@factory.example", next())),
		or(opts.Name, "Factory User"), or(opts.Role, "reviewer"), or(opts.Password, Password), "factory")
	require.NoError(tb, err)
	return u
}
