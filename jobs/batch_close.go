package jobs

import (
	"context"

	"github.com/riverqueue/river"

	"github.com/countersign/countersign/internal/workflow"
)

// BatchCloseArgs closes a batch when its max_wait has passed. It is
// scheduled when the batch opens; a batch that filled up first makes it a no-op.
type BatchCloseArgs struct {
	BatchID string `json:"batch_id" river:"unique"`
}

// Kind implements river.JobArgs.
func (BatchCloseArgs) Kind() string { return "batch_close" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (BatchCloseArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// BatchCloseWorker closes batches on time through the engine, which reads
// its own clock (tests move it).
type BatchCloseWorker struct {
	river.WorkerDefaults[BatchCloseArgs]
	Engine *workflow.Engine
}

// Work implements river.Worker.
func (w *BatchCloseWorker) Work(ctx context.Context, job *river.Job[BatchCloseArgs]) error {
	wait, err := w.Engine.CloseBatch(ctx, job.Args.BatchID)
	if err != nil {
		return err
	}
	if wait > 0 {
		return river.JobSnooze(wait)
	}
	return nil
}
