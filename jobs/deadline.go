package jobs

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"github.com/countersign/countersign/internal/workflow"
)

// DeadlineArgs applies a request's on_timeout at its deadline. It is scheduled
// when the request is made; a decision before then makes it a no-op.
type DeadlineArgs struct {
	RequestID string `json:"request_id" river:"unique"`
}

// Kind implements river.JobArgs.
func (DeadlineArgs) Kind() string { return "request_deadline" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (DeadlineArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// DeadlineWorker enforces deadlines through the engine.
type DeadlineWorker struct {
	river.WorkerDefaults[DeadlineArgs]
	Engine *workflow.Engine
}

// Work implements river.Worker.
func (w *DeadlineWorker) Work(ctx context.Context, job *river.Job[DeadlineArgs]) error {
	retryAt, err := w.Engine.Expire(ctx, job.Args.RequestID)
	if err != nil {
		return err
	}
	if retryAt != nil {
		return river.JobSnooze(max(time.Until(*retryAt), time.Second))
	}
	return nil
}
