package workflow_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// crashWorkflows are the workflows of the crash tests' worker processes.
func crashWorkflows(r *workflow.Registry, m *ai.Offline) {
	slowEffects(r, m)
	waiter(r, m)
	var before, after atomic.Int32
	sleeper(&before, &after)(r, m)
}

// TestCrashDuringWaits kills a worker process (SIGKILL) as soon as its runs
// are parked at a sleep and at an event wait: a second worker finishes both,
// the sleep at its time and the wait with the event delivered while no
// worker was up, and no step before the waits is recorded again.
func TestCrashDuringWaits(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a worker process")
	}
	t.Parallel()
	pool, url := testdb.Pool(t)
	ctx := context.Background()
	a, _ := crashWorker(t, url)
	starter := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Register: crashWorkflows})
	sleeping := start(t, starter, "sleeper", "crash-sleep", sleepIn{MS: 2000})
	waiting := start(t, starter, "waiter", "crash-event", waiterIn{TimeoutMS: 3600_000})
	starter.WaitRun(t, sleeping.ID, vocab.RunSleeping)
	starter.WaitRun(t, waiting.ID, vocab.RunWaitingEvent)
	kill(t, a)
	before := recordedSteps(t, pool)

	_, created, err := starter.Engine.Signal(ctx, workflow.SignalParams{RunID: waiting.ID, Name: "scraped", Key: "crash",
		Payload: json.RawMessage(`{"pages": 4}`)})
	require.NoError(t, err)
	require.True(t, created)

	b := testapp.StartOn(t, pool, url, testapp.Options{Register: crashWorkflows})
	done := b.WaitRun(t, waiting.ID, vocab.RunCompleted, vocab.RunFailed)
	require.JSONEq(t, `4`, string(done.Output))
	done = b.WaitRun(t, sleeping.ID, vocab.RunCompleted, vocab.RunFailed)
	require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
	require.JSONEq(t, `11`, string(done.Output), "the step before the sleep ran once, in the killed worker")
	after := map[stepStamp]bool{}
	for _, s := range recordedSteps(t, pool) {
		after[s] = true
	}
	for _, s := range before {
		require.True(t, after[s], "step %d of run %s was recorded before the crash and ran again", s.Seq, s.RunID)
	}
	require.Zero(t, auditCount(t, b, sleeping.ID, "run.recovered", ""), "parked runs are not orphans")
	// The event wait's timeout job stays scheduled; its resume sequence is
	// stale, so when it runs it claims nothing.
	require.Eventually(t, func() bool { return b.LiveJobs(t, sleeping.ID) == 0 }, 10*time.Second, 50*time.Millisecond)
}
