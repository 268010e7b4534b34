package jobs

import (
	"context"
	"time"

	"github.com/riverqueue/river"

	"github.com/countersign/countersign/internal/callback"
)

// QueueCallbacks is the queue of callback deliveries: a slow receiver holds
// one of its workers for up to ten seconds, and must not hold up runs.
const QueueCallbacks = "callbacks"

// CallbackWorkers is how many deliveries a process sends at once; each
// holds a database connection while it sends (the row lock that makes a
// delivery go out once).
const CallbackWorkers = 8

// The outbox schedules its jobs through the Scheduler.
var _ callback.Queue = (*Scheduler)(nil)

// CallbackArgs sends one delivery of the callback outbox.
type CallbackArgs struct {
	DeliveryID int64 `json:"delivery_id"`
}

// Kind implements river.JobArgs.
func (CallbackArgs) Kind() string { return "callback_delivery" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (CallbackArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueCallbacks, MaxAttempts: callback.MaxAttempts}
}

// CallbackWorker sends deliveries through the Deliverer, which records each
// attempt; a returned error makes River retry at the Deliverer's backoff.
type CallbackWorker struct {
	river.WorkerDefaults[CallbackArgs]
	Deliverer *callback.Deliverer
}

// Work implements river.Worker.
func (w *CallbackWorker) Work(ctx context.Context, job *river.Job[CallbackArgs]) error {
	return w.Deliverer.Deliver(ctx, job.Args.DeliveryID, job.Attempt)
}

// NextRetry implements river.Worker: the time the Deliverer recorded as the
// delivery's next attempt.
func (w *CallbackWorker) NextRetry(job *river.Job[CallbackArgs]) time.Time {
	return time.Now().Add(w.Deliverer.BackoffFunc(job.Attempt))
}

// Timeout implements river.Worker: one request's bound and time to record it.
func (w *CallbackWorker) Timeout(*river.Job[CallbackArgs]) time.Duration { return 30 * time.Second }
