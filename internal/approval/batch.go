package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// What a reviewer can do with a batch.
const (
	ApproveSelected   = "approve_selected"    // approve the selected, leave the rest pending as explicit items
	ApproveRejectRest = "approve_reject_rest" // approve the selected, reject the rest with one reason
	RejectAll         = "reject_all"          // reject every item shown
)

// ItemRef is an item as the reviewer was shown it.
type ItemRef struct {
	ID          string `json:"id"`
	PayloadHash string `json:"payload_hash"`
}

// BatchDecideParams is one reviewer action on a batch. Items are exactly the
// items the reviewer saw, with the hashes of what they saw; only those are
// decided. Selected lists the ids of the items to approve.
type BatchDecideParams struct {
	BatchID  string
	Actor    Actor
	Action   string
	Items    []ItemRef
	Selected []string
	Reason   string
}

// ItemOutcome says what happened to one item.
type ItemOutcome struct {
	RequestID string `json:"request_id"`
	Outcome   string `json:"outcome"` // approved, rejected, left_out, approval_recorded, refused
	Note      string `json:"note,omitempty"`
}

// BatchResult is what a batch decision did.
type BatchResult struct {
	DecisionID string        `json:"batch_decision_id"`
	Approved   int           `json:"approved"`
	Rejected   int           `json:"rejected"`
	LeftOut    int           `json:"left_out"`
	Refused    []ItemOutcome `json:"refused"`
	Items      []ItemOutcome `json:"items"`
	Resumed    int           `json:"resumed"`
}

// DecideBatch decides the shown items of a batch in one transaction: one batch
// decision, a decision per item pointing at it, the runs' statuses, every
// resume job in one insert, and the audit events. An item that changed since
// it was shown, that someone else decided, or that this reviewer may not
// approve (the run is theirs, the rule needs another role) is refused and
// reported, and the others go ahead. Returns ErrNotFound, ErrInvalidInput.
func (s *Service) DecideBatch(ctx context.Context, p BatchDecideParams) (*BatchResult, error) {
	if err := checkBatch(&p); err != nil {
		return nil, err
	}
	return store.WithTxV(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) (*BatchResult, error) {
		b, err := lockBatch(ctx, tx, p)
		if err != nil {
			return nil, err
		}
		res := &BatchResult{Refused: []ItemOutcome{}}
		if res.DecisionID, err = store.BatchDecisionInsert(ctx, tx, b.ID, p.Actor.Name, p.Action, p.Reason); err != nil {
			return nil, err
		}
		resume, err := s.decideItems(ctx, tx, b, p, res)
		if err != nil {
			return nil, err
		}
		if err := s.scheduler.EnqueueRuns(ctx, tx, resume); err != nil {
			return nil, err
		}
		res.Resumed = len(resume)
		if err := s.noticeBatchDecided(ctx, tx, b, p, res); err != nil {
			return nil, err
		}
		return res, settleBatch(ctx, tx, b, p, res)
	})
}

// lockBatch locks a batch that is ready for review and refuses, before the
// first write, an actor whose roles may decide none of its items: such an
// actor leaves no batch decision, no event, and every item where it was.
func lockBatch(ctx context.Context, tx pgx.Tx, p BatchDecideParams) (*store.Batch, error) {
	b, err := store.BatchLock(ctx, tx, p.BatchID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("batch %s: %w", p.BatchID, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	if b.Status == vocab.BatchOpen {
		return nil, fmt.Errorf("%w: the batch is still collecting items; it is ready at %s or at %d items",
			ErrInvalidInput, b.ClosesAt.UTC().Format("15:04 UTC"), b.MaxSize)
	}
	return b, authorizeBatch(ctx, tx, b, p.Actor)
}

// decideItems decides, leaves out or refuses each shown item, counting the
// outcomes in res, and returns the runs to resume.
func (s *Service) decideItems(ctx context.Context, tx pgx.Tx, b *store.Batch, p BatchDecideParams, res *BatchResult) ([]RunRef, error) {
	var resume []RunRef
	for _, item := range p.Items {
		var out itemResult
		var err error
		selected := slices.Contains(p.Selected, item.ID)
		if p.Action == ApproveSelected && !selected {
			out, err = leaveOut(ctx, tx, b, item, p.Actor)
		} else {
			verdict, reason := vocab.VerdictApprove, ""
			if !selected || p.Action == RejectAll {
				verdict, reason = vocab.VerdictReject, p.Reason
			}
			out, err = s.decideItem(ctx, tx, b, item, p, verdict, reason, res.DecisionID)
		}
		if err != nil {
			return nil, err
		}
		switch out.Outcome {
		case "approved":
			res.Approved++
		case "rejected":
			res.Rejected++
		case "left_out":
			res.LeftOut++
		case "refused":
			res.Refused = append(res.Refused, out.ItemOutcome)
		}
		if out.resume != nil {
			resume = append(resume, *out.resume)
		}
		res.Items = append(res.Items, out.ItemOutcome)
	}
	return resume, nil
}

// settleBatch records the batch decision's counts, marks the batch decided
// when nothing in it is pending, appends batch.decided and signals once for
// the whole batch, so that the inbox refreshes once.
func settleBatch(ctx context.Context, tx pgx.Tx, b *store.Batch, p BatchDecideParams, res *BatchResult) error {
	refused, _ := json.Marshal(res.Refused)
	if err := store.BatchDecisionFinish(ctx, tx, &store.BatchDecision{ID: res.DecisionID, Approved: res.Approved,
		Rejected: res.Rejected, LeftOut: res.LeftOut, Refused: refused}); err != nil {
		return err
	}
	if err := store.BatchSetDecided(ctx, tx, b.ID); err != nil {
		return err
	}
	if _, err := audit.Append(ctx, tx, audit.Event{Actor: p.Actor.Name, Subject: audit.BatchSubject(b.ID),
		Details: audit.BatchDecided{Facets: audit.Facets{Workflow: b.Workflow, Rule: b.Rule, Tier: "batched"},
			BatchDecisionID: res.DecisionID, Action: p.Action, Reason: p.Reason, Shown: len(p.Items), Approved: res.Approved, Rejected: res.Rejected,
			LeftOut: res.LeftOut, Refused: res.Refused}}); err != nil {
		return err
	}
	return notify.Send(ctx, tx, notify.Message{Type: notify.KindBatch, ID: b.ID, Status: string(vocab.BatchDecided)})
}

type itemResult struct {
	ItemOutcome
	resume *RunRef
}

func (s *Service) decideItem(ctx context.Context, tx pgx.Tx, b *store.Batch, item ItemRef, p BatchDecideParams, verdict vocab.Verdict, reason, decisionID string) (itemResult, error) {
	out := itemResult{ItemOutcome: ItemOutcome{RequestID: item.ID}}
	res, err := s.DecideTx(ctx, tx, DecideParams{RequestID: item.ID, Actor: p.Actor, Verdict: verdict, Reason: reason,
		PayloadHash: item.PayloadHash, BatchDecisionID: &decisionID, InBatch: b.ID}, TxOptions{})
	var ad *AlreadyDecidedError
	switch {
	case errors.Is(err, ErrNotInBatch):
		out.Outcome, out.Note = "refused", "not an item of this batch"
	case errors.As(err, &ad):
		out.Outcome, out.Note = "refused", ad.Error()
	case errors.Is(err, ErrPayloadChanged):
		out.Outcome, out.Note = "refused", "the proposed action changed after the batch was shown"
	case errors.Is(err, ErrForbidden):
		out.Outcome, out.Note = "refused", strings.TrimPrefix(err.Error(), ErrForbidden.Error()+": ")
	case err != nil:
		return out, err
	case res.Decision == nil:
		out.Outcome, out.Note = "approval_recorded", fmt.Sprintf("%d of %d approvals", res.Votes, res.Required)
	default:
		out.Outcome = map[vocab.Verdict]string{vocab.VerdictApprove: "approved", vocab.VerdictReject: "rejected"}[verdict]
		out.resume = res.Resume
	}
	return out, nil
}

// authorizeBatch refuses an actor whose roles may decide nothing in the
// batch (the same rights as a single decision: CanDecide). Each item is then
// checked again on its own, by DecideTx or leaveOut.
func authorizeBatch(ctx context.Context, tx pgx.Tx, b *store.Batch, actor Actor) error {
	if actor.System {
		return nil
	}
	reqs, err := store.BatchDeciders(ctx, tx, b.ID)
	if err != nil {
		return err
	}
	if len(reqs) == 0 {
		return fmt.Errorf("%w: this batch has no items left", ErrInvalidInput)
	}
	var roles []vocab.Role
	for _, r := range reqs {
		if CanDecide(r, actor.Roles) {
			return nil
		}
		roles = append(roles, AllowedRoles(r)...)
	}
	slices.Sort(roles)
	return fmt.Errorf("%w: deciding this batch needs one of the roles %s", ErrForbidden, vocab.Join(slices.Compact(roles), ", "))
}

// leaveOut sends an item back to the inbox. Leaving an item out is a
// reviewer's act, so it needs the roles that could decide the item.
func leaveOut(ctx context.Context, tx pgx.Tx, b *store.Batch, item ItemRef, actor Actor) (itemResult, error) {
	out := itemResult{ItemOutcome: ItemOutcome{RequestID: item.ID}}
	req, err := store.RequestGetForUpdate(ctx, tx, item.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		out.Outcome, out.Note = "refused", "not an item of this batch"
		return out, nil
	case err != nil:
		return out, err
	case req.BatchID == nil || *req.BatchID != b.ID:
		out.Outcome, out.Note = "refused", "not an item of this batch"
		return out, nil
	case req.Status != vocab.RequestPending:
		out.Outcome, out.Note = "refused", alreadyDecided(req).Error()
		return out, nil
	case !actor.System && !CanDecide(req, actor.Roles):
		out.Outcome, out.Note = "refused", "leaving it out needs one of the roles "+vocab.Join(AllowedRoles(req), ", ")
		return out, nil
	}
	note := fmt.Sprintf("Left out of a batch by %s: review it on its own.", actor.Name)
	if err := store.RequestLeaveOut(ctx, tx, item.ID, note); err != nil {
		return out, err
	}
	out.Outcome, out.Note = "left_out", note
	return out, nil
}

func checkBatch(p *BatchDecideParams) error {
	p.Reason = strings.TrimSpace(p.Reason)
	switch p.Action {
	case ApproveSelected:
		if len(p.Selected) == 0 {
			return fmt.Errorf("%w: select at least one item to approve", ErrInvalidInput)
		}
	case ApproveRejectRest, RejectAll:
		if p.Reason == "" {
			return fmt.Errorf("%w: rejecting needs a reason", ErrInvalidInput)
		}
	default:
		return fmt.Errorf("%w: unknown batch action %q (want approve_selected, approve_reject_rest or reject_all)", ErrInvalidInput, p.Action)
	}
	if len(p.Items) == 0 {
		return fmt.Errorf("%w: no items: send the items you were shown with their payload hashes", ErrInvalidInput)
	}
	if len(p.Items) > 5000 {
		return fmt.Errorf("%w: at most 5000 items in one decision", ErrInvalidInput)
	}
	// A malformed id would abort the transaction at its first use: refuse it
	// before one is opened.
	if !store.IsID(p.BatchID) {
		return fmt.Errorf("%w: the batch id %q is not an id", ErrInvalidInput, p.BatchID)
	}
	shown := map[string]bool{}
	for _, it := range p.Items {
		if it.ID == "" || it.PayloadHash == "" {
			return fmt.Errorf("%w: every item needs an id and a payload_hash", ErrInvalidInput)
		}
		if !store.IsID(it.ID) {
			return fmt.Errorf("%w: item %q is not an id", ErrInvalidInput, it.ID)
		}
		if shown[it.ID] {
			return fmt.Errorf("%w: item %s is listed twice", ErrInvalidInput, it.ID)
		}
		shown[it.ID] = true
	}
	for _, id := range p.Selected {
		if !shown[id] {
			return fmt.Errorf("%w: selected item %s was not among the items shown", ErrInvalidInput, id)
		}
	}
	return nil
}

// Expire applies a request's on_timeout once its deadline has passed: reject
// or approve it as the policy (actor policy:<rule>), or escalate it. A request
// decided meanwhile is left alone. It returns the time to try again when the
// deadline has not passed yet (the clock may differ from the scheduler's).
func (s *Service) Expire(ctx context.Context, requestID string) (retryAt *time.Time, err error) {
	req, err := store.RequestGet(ctx, s.pool, requestID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if req.Status != vocab.RequestPending || req.Deadline == nil {
		return nil, nil
	}
	if now := s.now(); now.Before(*req.Deadline) {
		return req.Deadline, nil
	}
	actor := Actor{Name: "policy:" + req.Rule, System: true}
	reason := fmt.Sprintf("the deadline (%s) passed; the rule says %s", req.Deadline.UTC().Format("2006-01-02 15:04 UTC"), req.OnTimeout)
	switch req.OnTimeout {
	case "reject", "approve":
		verdict := vocab.VerdictReject
		if req.OnTimeout == "approve" {
			verdict = vocab.VerdictApprove
		}
		_, err := s.Decide(ctx, DecideParams{RequestID: req.ID, Actor: actor, Verdict: verdict, Reason: reason, PayloadHash: req.PayloadHash})
		if errors.Is(err, ErrAlreadyDecided) {
			return nil, nil
		}
		return nil, err
	case "escalate":
		return nil, s.escalate(ctx, req, actor, reason)
	}
	return nil, nil
}

// escalate marks a request escalated: the rule's escalate_to roles may now
// decide it too. A request decided or escalated meanwhile is left alone.
func (s *Service) escalate(ctx context.Context, req *store.Request, actor Actor, reason string) error {
	return store.WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		note := "Escalated: " + reason
		if len(req.EscalateTo) > 0 {
			note += "; " + vocab.Join(req.EscalateTo, ", ") + " may now decide it"
		}
		ok, err := store.RequestEscalate(ctx, tx, req.ID, note)
		if err != nil || !ok {
			return err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: actor.Name, Subject: audit.RequestSubject(req.ID), RunID: req.RunID,
			Details: audit.RequestEscalated{Facets: audit.Facets{Workflow: req.Workflow, Rule: req.Rule, Tier: req.Tier},
				EscalateTo: req.EscalateTo, Reason: reason}}); err != nil {
			return err
		}
		if err := s.noticeEscalated(ctx, tx, req); err != nil {
			return err
		}
		return notifyRequest(ctx, tx, req)
	})
}

// schedule hangs a new human request on the batch and deadline machinery, in
// the transaction that creates it: a batched request joins the open batch of
// its group (opening one, with its closing job at max_wait, when there is
// none; reaching max_size closes it at once), and a request with a deadline
// gets its deadline job.
func (s *Service) schedule(ctx context.Context, tx pgx.Tx, req *store.Request, d policy.Decision) error {
	if req.Tier == vocab.TierBatched && d.Batch != nil {
		closesAt := s.now().Add(d.Batch.MaxWait)
		id, opened, open, err := store.BatchJoin(ctx, tx, req.ID, d.Rule+"|"+d.BatchKey, d.Rule, req.Workflow, req.ActionKind,
			d.Batch.MaxSize, closesAt)
		if err != nil {
			return err
		}
		if opened && open {
			if err := s.scheduler.ScheduleBatchClose(ctx, tx, id, closesAt); err != nil {
				return err
			}
		}
		if !open {
			if err := s.noticeBatchReady(ctx, tx, id); err != nil {
				return err
			}
		}
	}
	if req.Deadline != nil {
		return s.scheduler.ScheduleDeadline(ctx, tx, req.ID, *req.Deadline)
	}
	return nil
}

// CloseBatch makes an open batch ready for review once its max_wait has
// passed. It returns how long to wait when that time has not come yet (the
// engine's clock may differ from the scheduler's); a batch that is no longer
// open (it filled up first) is left alone.
func (s *Service) CloseBatch(ctx context.Context, batchID string) (wait time.Duration, err error) {
	b, err := store.BatchGet(ctx, s.pool, batchID)
	if err != nil {
		return 0, err
	}
	if b.Status != vocab.BatchOpen {
		return 0, nil
	}
	if wait := b.ClosesAt.Sub(s.now()); wait > 0 {
		return wait, nil
	}
	return 0, store.WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		closed, err := store.BatchClose(ctx, tx, b.ID)
		if err != nil || !closed {
			return err
		}
		if err := s.noticeBatchReady(ctx, tx, b.ID); err != nil {
			return err
		}
		return notify.Send(ctx, tx, notify.Message{Type: notify.KindBatch, ID: b.ID, Status: string(vocab.BatchReady)})
	})
}
