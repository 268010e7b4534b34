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

// RecordAuto records, in the caller's transaction, an action the policy
// approves by itself (actor policy:<rule>): the request, already approved,
// its decision and the decision.auto event. It returns the decision the run
// goes on with.
func RecordAuto(ctx context.Context, tx pgx.Tx, req *store.Request, action Action) (Decision, error) {
	actor := "policy:" + req.Rule
	req.Status, req.DecidedBy = vocab.RequestApproved, &actor
	saved, err := store.RequestInsert(ctx, tx, req)
	if err != nil {
		return Decision{}, err
	}
	if _, err := store.DecisionInsert(ctx, tx, &store.Decision{
		RequestID: saved.ID, RunID: req.RunID, Actor: actor, Verdict: vocab.VerdictApprove, Reason: req.Reason,
		PayloadHash: saved.PayloadHash, PolicyVersion: req.PolicyVersion, Rule: req.Rule, Tier: saved.Tier,
	}); err != nil {
		return Decision{}, err
	}
	_, err = audit.Append(ctx, tx, audit.Event{Actor: actor, Subject: audit.RequestSubject(saved.ID), RunID: req.RunID,
		Details: audit.DecisionAuto{Facets: audit.Facets{Verdict: vocab.VerdictApprove, Workflow: saved.Workflow, Rule: req.Rule, Tier: saved.Tier},
			ActionKind: action.Kind, Summary: action.Summary, PayloadHash: saved.PayloadHash, PolicyVersion: req.PolicyVersion, Reason: req.Reason}})
	if err == nil {
		// Chained in this transaction when the chain is free: the approvals
		// API answers with the receipt at once, without a chaining pass.
		_, err = audit.ChainIfFree(ctx, tx)
	}
	return Decision{RequestID: saved.ID, Verdict: vocab.VerdictApprove, Actor: actor, Reason: req.Reason, Params: action.Params,
		Tier: saved.Tier, Rule: req.Rule, PolicyVersion: req.PolicyVersion, DecidedAt: saved.CreatedAt}, err
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
