package approval

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// The notifications this package causes. Each is emitted in the transaction
// of its cause (notice.Outbox.Emit) and called from one line where that
// happens, so that a rolled-back decision notifies no one.

// noticeOpened tells the users who may decide an explicit request that it
// waits, and schedules its deadline reminders (50% and 90%). A batched
// request is announced with its batch, when the batch is ready.
func (s *Service) noticeOpened(ctx context.Context, tx pgx.Tx, req *store.Request) error {
	if req.Tier != vocab.TierExplicit {
		return nil
	}
	if err := s.notices.Emit(ctx, tx, notice.Event{Kind: notice.RequestWaiting, RequestID: req.ID, RunID: req.RunID,
		Roles: AllowedRoles(req)}); err != nil {
		return err
	}
	if req.Deadline != nil {
		return s.notices.Remind(ctx, tx, req.ID, req.CreatedAt, *req.Deadline)
	}
	return nil
}

// noticeBatchReady tells the users who may decide any item of a batch that
// it is ready for review.
func (s *Service) noticeBatchReady(ctx context.Context, tx pgx.Tx, batchID string) error {
	deciders, err := store.BatchDeciders(ctx, tx, batchID)
	if err != nil {
		return err
	}
	var roles []vocab.Role
	for _, r := range deciders {
		for _, role := range AllowedRoles(r) {
			if !slices.Contains(roles, role) {
				roles = append(roles, role)
			}
		}
	}
	return s.notices.Emit(ctx, tx, notice.Event{Kind: notice.BatchReady, BatchID: batchID, Roles: roles})
}

// noticeDecided tells subscribers of a recorded decision, and, when the
// decision is the deadline's own (the policy rejecting or approving on
// timeout), those who could have decided that the deadline passed. An item
// of a batch decision (o.Notify false) is announced with its batch
// (noticeBatchDecided): a thousand events in the batch's transaction would
// slow the decision for a thousand lines that one digest would carry.
func (s *Service) noticeDecided(ctx context.Context, tx pgx.Tx, b *ballot, res *DecideResult, o TxOptions) error {
	if err := s.noticeChatCopies(ctx, tx, b, res); err != nil {
		return err
	}
	if !o.Notify {
		return nil
	}
	req := res.Request
	if b.p.Actor.System && req.Deadline != nil && !s.now().Before(*req.Deadline) {
		if err := s.notices.Emit(ctx, tx, notice.Event{Kind: notice.DeadlinePassed, RequestID: req.ID, RunID: req.RunID,
			Roles: AllowedRoles(req), Detail: "decided by " + b.p.Actor.Name + ": " + string(b.p.Verdict)}); err != nil {
			return err
		}
	}
	return s.notices.EmitToSubscribers(ctx, tx, notice.Event{Kind: notice.DecisionRecorded, RequestID: req.ID, RunID: req.RunID,
		Detail: string(b.p.Verdict) + " by " + b.p.Actor.Name})
}

// noticeChatCopies has every chat (Slack) copy of the request updated to
// show the decision, whoever made it and wherever: a batch's items and a
// deadline's expiry included.
func (s *Service) noticeChatCopies(ctx context.Context, tx pgx.Tx, b *ballot, res *DecideResult) error {
	req := res.Request
	return s.notices.Decided(ctx, tx, notice.Decided{RequestID: req.ID, Verdict: b.p.Verdict, Actor: b.p.Actor.Name,
		Channel: b.p.Channel, At: res.Decision.CreatedAt,
		Expired: b.p.Actor.System && req.Deadline != nil && !s.now().Before(*req.Deadline)})
}

// noticeBatchDecided tells subscribers that a batch was decided.
func (s *Service) noticeBatchDecided(ctx context.Context, tx pgx.Tx, b *store.Batch, p BatchDecideParams, res *BatchResult) error {
	return s.notices.EmitToSubscribers(ctx, tx, notice.Event{Kind: notice.DecisionRecorded, BatchID: b.ID,
		Detail: fmt.Sprintf("batch %s by %s: %d approved, %d rejected, %d left out", p.Action, p.Actor.Name, res.Approved, res.Rejected, res.LeftOut)})
}

// noticeEscalated tells the escalate_to roles that a request is now theirs
// too, and the original deciders that its deadline passed.
func (s *Service) noticeEscalated(ctx context.Context, tx pgx.Tx, req *store.Request) error {
	if err := s.notices.Emit(ctx, tx, notice.Event{Kind: notice.DeadlinePassed, RequestID: req.ID, RunID: req.RunID,
		Roles: AllowedRoles(req), Detail: "escalated"}); err != nil {
		return err
	}
	if len(req.EscalateTo) == 0 {
		return nil
	}
	return s.notices.Emit(ctx, tx, notice.Event{Kind: notice.Escalated, RequestID: req.ID, RunID: req.RunID, Roles: req.EscalateTo})
}

// Remind emits a deadline reminder (notice.DeadlineHalf or DeadlineNear)
// for a request that still waits; a decided or cancelled request sends
// nothing. It returns when to try again if the reminder's time has not come
// by the engine's clock.
func (s *Service) Remind(ctx context.Context, requestID string, kind notice.Kind) (retryAt *time.Time, err error) {
	frac := 0.5
	if kind == notice.DeadlineNear {
		frac = 0.9
	}
	return retryAt, store.WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		req, err := store.RequestGet(ctx, tx, requestID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if req.Status != vocab.RequestPending || req.Deadline == nil {
			return nil
		}
		at := req.CreatedAt.Add(time.Duration(float64(req.Deadline.Sub(req.CreatedAt)) * frac))
		if s.now().Before(at) {
			retryAt = &at
			return nil
		}
		return s.notices.Emit(ctx, tx, notice.Event{Kind: kind, RequestID: req.ID, RunID: req.RunID, Roles: AllowedRoles(req)})
	})
}
