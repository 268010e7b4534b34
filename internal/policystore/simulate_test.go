package policystore_test

import (
	"context"
	"fmt"
	"strings"
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

// padded registers a workflow whose one action carries a list of n items, so
// that a candidate rule scanning it costs real CPU.
func padded(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "padded", func(ctx context.Context, n int) (string, error) {
		items := make([]any, n)
		for i := range items {
			items[i] = "hay"
		}
		d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: "scan", Summary: "padded", Params: map[string]any{"items": items}})
		return string(d.Verdict), err
	})
}

// startPadded records one pending request per size in sizes.
func startPadded(t *testing.T, b *testapp.Bundle, sizes ...int) {
	t.Helper()
	for i, n := range sizes {
		run, _, err := b.Engine.Start(context.Background(), workflow.StartParams{Workflow: "padded",
			BusinessKey: fmt.Sprint("p", i), Input: []byte(fmt.Sprint(n)), StartedBy: "test"})
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	}
}

// scanRules is a candidate of n rules that each scan the action's items and
// never match: every request evaluates all of them.
func scanRules(t *testing.T, n int) *policy.Policy {
	t.Helper()
	var src strings.Builder
	src.WriteString("version: 1\nrules:\n")
	for i := range n {
		fmt.Fprintf(&src, "  - {name: scan-%d, when: 'action.params.items.exists(x, x == \"needle\")', tier: auto}\n", i)
	}
	p, err := policy.Load([]byte(src.String()))
	require.NoError(t, err)
	return p
}

func TestSimulateStops(t *testing.T) {
	t.Parallel()

	t.Run("CostLimit", func(t *testing.T) {
		t.Parallel()
		b := testapp.Start(t, testapp.Options{Register: padded})
		startPadded(t, b, 10, 20_000)
		start := time.Now()
		_, err := policystore.Simulate(context.Background(), b.Pool, scanRules(t, 1), time.Now().Add(-time.Hour))
		require.Less(t, time.Since(start), raceSlowdown*2*time.Second)
		require.ErrorIs(t, err, policy.ErrCostLimit)
		require.Regexp(t, `^request [0-9a-f-]{36}: rule "scan-0": policy evaluation exceeded its cost limit$`, err.Error())
	})

	t.Run("ContextCancelStopsARunningSimulation", func(t *testing.T) {
		t.Parallel()
		b := testapp.Start(t, testapp.Options{Register: padded})
		// Each request costs up to 5 x 15,000, under both limits: a legal
		// but slow simulation (smaller under the race detector, which makes
		// it slow enough).
		n := 2500
		if raceSlowdown > 1 {
			n = 500
		}
		startPadded(t, b, n, n, n, n, n, n, n, n)
		candidate := scanRules(t, 5)
		since := time.Now().Add(-time.Hour)

		start := time.Now()
		sim, err := policystore.Simulate(context.Background(), b.Pool, candidate, since)
		require.NoError(t, err)
		require.Equal(t, 8, sim.Requests)
		full := time.Since(start)

		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(full/4, cancel)
		start = time.Now()
		_, err = policystore.Simulate(ctx, b.Pool, candidate, since)
		stopped := time.Since(start)
		t.Logf("full run %s, cancelled after %s, returned after %s", full, full/4, stopped)
		require.ErrorIs(t, err, context.Canceled)
		require.Less(t, stopped, full/2, "stopped soon after the cancel (full run %s)", full)
	})
}
