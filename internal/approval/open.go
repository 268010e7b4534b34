package approval

import (
	"context"
	"encoding/json"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// Open records a human request in the caller's transaction (the run's
// parking one), with its approval.requested event; a batched request joins
// its group's open batch and a request with a deadline gets its deadline job;
// the inbox is signalled on commit. It returns the stored request.
func (s *Service) Open(ctx context.Context, tx pgx.Tx, req *store.Request, pd policy.Decision) (*store.Request, error) {
	saved, err := store.RequestInsert(ctx, tx, req)
	if err != nil {
		return nil, err
	}
	if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RequestSubject(saved.ID), RunID: saved.RunID,
		Details: audit.ApprovalRequested{Facets: audit.Facets{Workflow: saved.Workflow, Rule: saved.Rule, Tier: saved.Tier},
			ActionKind: saved.ActionKind, Summary: saved.Summary, PayloadHash: saved.PayloadHash, Shown: json.RawMessage(saved.Action),
			PolicyVersion: saved.PolicyVersion, Reason: saved.Reason,
			ApprovalsRequired: saved.ApprovalsRequired, Deadline: saved.Deadline}}); err != nil {
		return nil, err
	}
	if err := s.schedule(ctx, tx, saved, pd); err != nil {
		return nil, err
	}
	if err := notify.Send(ctx, tx, notify.Message{Type: notify.KindRequest, ID: saved.ID, RunID: saved.RunID, Tier: string(saved.Tier)}); err != nil {
		return nil, err
	}
	if err := s.noticeOpened(ctx, tx, saved); err != nil {
		return nil, err
	}
	return saved, nil
}

// AutoDecision is the decision an action the policy approves by itself
// becomes (actor policy:<rule>), before it is recorded: RecordAuto fills in
// the request's id and time.
func AutoDecision(req *store.Request, action Action) Decision {
	return Decision{Verdict: vocab.VerdictApprove, Actor: "policy:" + req.Rule, Reason: req.Reason, Params: action.Params,
		Tier: req.Tier, Rule: req.Rule, PolicyVersion: req.PolicyVersion}
}

// RecordAuto records dec, an action the policy approves by itself
// (AutoDecision), in one statement: the request, already approved, its
// decision, the decision.auto event, and the approval step (the last of
// steps, after the pure steps held before it), whose output is dec.
// It returns dec with the request's id and time, as the step stores it.
// Returns store.ErrNotFound, having written nothing, when the steps' owner
// no longer holds the run.
//
// The event is chained by the chainer (or by a receipt asked for sooner),
// not here: chaining in the run's transaction would take the chain's lock
// and three more round trips on the run's path.
func RecordAuto(ctx context.Context, db store.DBTX, req *store.Request, action Action, dec Decision, steps ...store.StepRecord) (Decision, error) {
	req.Status, req.DecidedBy = vocab.RequestApproved, &dec.Actor
	ev := audit.DecisionAuto{Facets: audit.Facets{Verdict: vocab.VerdictApprove, Workflow: req.Workflow, Rule: req.Rule, Tier: req.Tier},
		ActionKind: action.Kind, Summary: action.Summary, PayloadHash: req.PayloadHash, PolicyVersion: req.PolicyVersion, Reason: req.Reason}
	saved, err := store.RequestRecordAuto(ctx, db, req, dec.Actor, store.AutoEvent{Kind: string(ev.Kind()), Details: ev}, steps...)
	if err != nil {
		return Decision{}, err
	}
	dec.RequestID, dec.DecidedAt = saved.ID, saved.CreatedAt
	return dec, nil
}

// CancelForRun cancels the pending requests of a cancelled run and settles
// the batches that leaves with nothing pending, in the caller's transaction.
// A batch is settled by one statement (store.BatchSetDecided) wherever it
// happens: here, after an item decided on its own, after a batch decision.
func CancelForRun(ctx context.Context, tx pgx.Tx, runID, actor string) error {
	reqs, err := store.RequestListByRun(ctx, tx, runID)
	if err != nil {
		return err
	}
	if err := store.RequestCancelForRun(ctx, tx, runID, actor); err != nil {
		return err
	}
	settled := map[string]bool{}
	for _, r := range reqs {
		if r.BatchID == nil || settled[*r.BatchID] {
			continue
		}
		settled[*r.BatchID] = true
		if err := store.BatchSetDecided(ctx, tx, *r.BatchID); err != nil {
			return err
		}
	}
	return nil
}
