package factory_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

func TestFactory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)

	t.Run("RunDefaults", func(t *testing.T) {
		t.Parallel()
		a, b := factory.Run(ctx, t, pool, nil), factory.Run(ctx, t, pool, nil)
		require.Equal(t, vocab.RunQueued, a.Status)
		require.NotEqual(t, a.BusinessKey, b.BusinessKey)
	})

	t.Run("RunOptions", func(t *testing.T) {
		t.Parallel()
		run := factory.Run(ctx, t, pool, &factory.RunOpts{Workflow: factory.Ptr("w"), Input: []byte(`{"a":1}`),
			Status: factory.Ptr(vocab.RunWaitingHuman)})
		require.Equal(t, "w", run.Workflow)
		require.JSONEq(t, `{"a":1}`, string(run.Input))
		require.Equal(t, vocab.RunWaitingHuman, run.Status)
	})

	t.Run("Request", func(t *testing.T) {
		t.Parallel()
		req := factory.Request(ctx, t, pool, nil)
		require.Equal(t, vocab.RequestPending, req.Status)
		// The hash is of the action as the engine encodes it, before jsonb
		// reorders it.
		var a workflow.Action
		require.NoError(t, json.Unmarshal(req.Action, &a))
		raw, err := json.Marshal(a)
		require.NoError(t, err)
		require.Equal(t, workflow.PayloadHash(raw), req.PayloadHash)
		run, err := store.RunGet(ctx, pool, req.RunID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunWaitingHuman, run.Status)

		auto := factory.Request(ctx, t, pool, &factory.RequestOpts{Run: run, StepSeq: factory.Ptr(1),
			Tier: factory.Ptr(vocab.TierAuto), Status: factory.Ptr(vocab.RequestApproved)})
		require.Equal(t, run.ID, auto.RunID)
		require.NotNil(t, auto.DecidedAt)
	})

	t.Run("User", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, &factory.UserOpts{Role: factory.Ptr("approver")})
		require.Equal(t, vocab.RoleApprover, u.Role)
		signedIn, err := account.SignIn(ctx, pool, u.Email, factory.Password, "192.0.2.1")
		require.NoError(t, err)
		require.Equal(t, u.ID, signedIn.ID)
	})
}
