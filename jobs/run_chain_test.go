package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestChainContext: a run chained after the job's own gets a timeout of its
// own, not what the job has left, and still stops with the worker.
func TestChainContext(t *testing.T) {
	t.Parallel()

	t.Run("NotTheJobsDeadline", func(t *testing.T) {
		t.Parallel()
		job, cancelJob := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancelJob()
		ctx, cancel := chainContext(job, time.Minute)
		defer cancel()
		<-job.Done()
		time.Sleep(10 * time.Millisecond)
		require.NoError(t, ctx.Err(), "the job's time running out does not end the chained run")
		deadline, ok := ctx.Deadline()
		require.True(t, ok)
		require.Greater(t, time.Until(deadline), 50*time.Second, "its own timeout")
	})

	t.Run("WorkerStops", func(t *testing.T) {
		t.Parallel()
		job, stopWorker := context.WithCancel(context.Background())
		ctx, cancel := chainContext(job, time.Minute)
		defer cancel()
		stopWorker()
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a stopping worker does not stop the chained run")
		}
		require.ErrorIs(t, context.Cause(ctx), context.Canceled, "the engine gives the lease up, spending no attempt")
	})

	t.Run("OwnTimeout", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := chainContext(context.Background(), 10*time.Millisecond)
		defer cancel()
		<-ctx.Done()
		require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	})
}
