package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// RequestHook returns the engine's hook for new human requests: a batched one
// joins the open batch of its group (opening one, with its closing job, when
// there is none), and a request with a deadline gets its deadline job. It all
// happens in the transaction that creates the request.
func RequestHook(client *river.Client[pgx.Tx], now func() time.Time) workflow.RequestHook {
	return func(ctx context.Context, tx pgx.Tx, req *store.Request, d policy.Decision) error {
		if req.Tier == vocab.TierBatched && d.Batch != nil {
			closesAt := now().Add(d.Batch.MaxWait)
			id, opened, open, err := store.BatchJoin(ctx, tx, req.ID, d.Rule+"|"+d.BatchKey, d.Rule, req.Workflow, req.ActionKind,
				d.Batch.MaxSize, closesAt)
			if err != nil {
				return err
			}
			if opened && open {
				if _, err := client.InsertTx(ctx, tx, BatchCloseArgs{BatchID: id}, &river.InsertOpts{ScheduledAt: closesAt}); err != nil {
					return err
				}
			}
		}
		if req.Deadline != nil {
			if _, err := client.InsertTx(ctx, tx, DeadlineArgs{RequestID: req.ID}, &river.InsertOpts{ScheduledAt: *req.Deadline}); err != nil {
				return err
			}
		}
		return nil
	}
}
