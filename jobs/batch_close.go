package jobs

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
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

// BatchCloseWorker closes batches on time.
type BatchCloseWorker struct {
	river.WorkerDefaults[BatchCloseArgs]
	Pool *pgxpool.Pool
	// Now is the clock; tests move it.
	Now func() time.Time
}

// Work implements river.Worker.
func (w *BatchCloseWorker) Work(ctx context.Context, job *river.Job[BatchCloseArgs]) error {
	b, err := store.BatchGet(ctx, w.Pool, job.Args.BatchID)
	if err != nil {
		return err
	}
	if b.Status != vocab.BatchOpen {
		return nil
	}
	if wait := b.ClosesAt.Sub(w.now()); wait > 0 {
		return river.JobSnooze(wait)
	}
	return store.WithTx(ctx, w.Pool, func(ctx context.Context, tx pgx.Tx) error {
		closed, err := store.BatchClose(ctx, tx, b.ID)
		if err != nil || !closed {
			return err
		}
		msg, _ := json.Marshal(map[string]string{"type": "batch", "id": b.ID, "status": string(vocab.BatchReady)})
		return store.Notify(ctx, tx, string(msg))
	})
}

func (w *BatchCloseWorker) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}
