package policystore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// counterRules decide on what a run has used: a simulation that zeroed the
// run's counters would put every request in the second rule's tier.
const counterRules = `version: 1
rules:
  - {name: long-run, when: 'run.steps_used == 2 && run.attempt == 1 && run.model_calls == 0 && run.tokens_used == 0', tier: explicit}
  - {name: rest, when: 'true', tier: auto}
`

// stepped proposes an action after two recorded steps.
func stepped(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "stepped", func(ctx context.Context, _ struct{}) (string, error) {
		for _, name := range []string{"one", "two"} {
			if _, err := workflow.Step(ctx, name, func(context.Context) (int, error) { return 1, nil }); err != nil {
				return "", err
			}
		}
		d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "thing.do", Summary: "after two steps"})
		return string(d.Verdict), err
	})
}

// TestSimulateSeesTheRunAsLiveEvaluationDoes replays a request under the
// policy that judged it live: the simulation builds the policy's input with
// the engine's own function, so nothing moves.
func TestSimulateSeesTheRunAsLiveEvaluationDoes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testapp.Start(t, testapp.Options{Register: stepped})
	_, err := policystore.Apply(ctx, b.Pool, []byte(counterRules), "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()

	run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "stepped", BusinessKey: "k", Input: []byte(`{}`), StartedBy: "test"})
	require.NoError(t, err)
	b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	req := b.PendingRequest(t, run.ID)
	require.Equal(t, "long-run", req.Rule, "live evaluation saw two steps used")

	candidate, err := policy.Load([]byte(counterRules))
	require.NoError(t, err)
	sim, err := policystore.Simulate(ctx, b.Pool, candidate, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, 1, sim.Requests)
	require.Zero(t, sim.Moved, "examples: %+v", sim.Examples)
}
