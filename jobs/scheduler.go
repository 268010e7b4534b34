package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/countersign/countersign/internal/approval"
)

// FetchCooldown is how soon after a job insert River may notify its workers
// again. A resumed run should start within milliseconds of the decision's
// commit, so both the working client and the scheduler's use it: River rate
// limits its insert notifications per client by this value.
const FetchCooldown = 2 * time.Millisecond

// Scheduler implements approval.Scheduler with an insert-only River client of
// its own. Such a client needs no workers, so the engine can be built
// complete before the working client, whose workers need the engine: that
// breaks the cycle without setting anything on the engine afterwards.
type Scheduler struct {
	client *river.Client[pgx.Tx]
}

// NewScheduler returns a Scheduler inserting through pool. River's own log
// goes to logger; middleware (the tracing one) wraps its inserts.
func NewScheduler(pool *pgxpool.Pool, logger *slog.Logger, middleware ...rivertype.Middleware) (*Scheduler, error) {
	// MaxAttempts as the working client's: deadline and batch-close jobs
	// inserted here would otherwise get River's default of 25.
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{FetchCooldown: FetchCooldown,
		MaxAttempts: RunMaxAttempts, Logger: logger, Middleware: middleware})
	if err != nil {
		return nil, fmt.Errorf("river insert client: %w", err)
	}
	return &Scheduler{client: client}, nil
}

// EnqueueRun implements approval.Scheduler.
func (s *Scheduler) EnqueueRun(ctx context.Context, tx pgx.Tx, runID string, seq int) error {
	_, err := s.client.InsertTx(ctx, tx, RunArgs{RunID: runID, Seq: seq}, nil)
	return err
}

// EnqueueRuns implements approval.Scheduler with one multi-row insert.
func (s *Scheduler) EnqueueRuns(ctx context.Context, tx pgx.Tx, runs []approval.RunRef) error {
	if len(runs) == 0 {
		return nil
	}
	params := make([]river.InsertManyParams, len(runs))
	for i, r := range runs {
		params[i] = river.InsertManyParams{Args: RunArgs{RunID: r.ID, Seq: r.Seq}}
	}
	_, err := s.client.InsertManyTx(ctx, tx, params)
	return err
}

// ScheduleRun implements approval.Scheduler: the run's job, due at at. River
// runs a scheduled job once its time passes, late if no worker was up then.
func (s *Scheduler) ScheduleRun(ctx context.Context, tx pgx.Tx, runID string, seq int, at time.Time) error {
	_, err := s.client.InsertTx(ctx, tx, RunArgs{RunID: runID, Seq: seq}, &river.InsertOpts{ScheduledAt: at})
	return err
}

// ScheduleDeadline implements approval.Scheduler.
func (s *Scheduler) ScheduleDeadline(ctx context.Context, tx pgx.Tx, requestID string, at time.Time) error {
	_, err := s.client.InsertTx(ctx, tx, DeadlineArgs{RequestID: requestID}, &river.InsertOpts{ScheduledAt: at})
	return err
}

// ScheduleBatchClose implements approval.Scheduler.
func (s *Scheduler) ScheduleBatchClose(ctx context.Context, tx pgx.Tx, batchID string, at time.Time) error {
	_, err := s.client.InsertTx(ctx, tx, BatchCloseArgs{BatchID: batchID}, &river.InsertOpts{ScheduledAt: at})
	return err
}

// EnqueueCallback implements callback.Queue: the delivery's job, due at at.
func (s *Scheduler) EnqueueCallback(ctx context.Context, tx pgx.Tx, id int64, at time.Time) error {
	var opts *river.InsertOpts
	if at.After(time.Now()) {
		opts = &river.InsertOpts{ScheduledAt: at}
	}
	_, err := s.client.InsertTx(ctx, tx, CallbackArgs{DeliveryID: id}, opts)
	return err
}
