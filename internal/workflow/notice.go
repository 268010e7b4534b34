package workflow

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/vocab"
)

// noticeRunFailed tells admins, in the transaction that records it, that a
// run failed for good.
func (e *Engine) noticeRunFailed(ctx context.Context, tx pgx.Tx, runID string, f *Failure) error {
	return e.notices.Emit(ctx, tx, notice.Event{Kind: notice.RunFailed, RunID: runID, Roles: []vocab.Role{vocab.RoleAdmin},
		Detail: f.Code + ": " + f.Message})
}

// Remind emits a deadline reminder for a request that still waits
// (approval.Service.Remind); it returns when to try again if its time has
// not come by the engine's clock.
func (e *Engine) Remind(ctx context.Context, requestID string, kind notice.Kind) (*time.Time, error) {
	return e.approvals.Remind(ctx, requestID, kind)
}
