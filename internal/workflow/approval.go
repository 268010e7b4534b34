package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/approval"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// RequestApproval is the human gate. It asks the policy: an auto action is
// approved, recorded and returned at once; a batched or explicit one becomes
// an approval request, the run waits for a human, and the function unwinds
// with ErrSuspended (return it as it is). When a decision resumes the run, the
// replay reaches this call again and it returns that decision. A rejection
// ends the run and never returns here, unless the workflow was registered
// with Options.HandlesRejection: then it returns the rejected Decision.
func RequestApproval(ctx context.Context, action Action) (_ Decision, err error) {
	x, err := executionFrom(ctx)
	if err != nil {
		return Decision{}, err
	}
	if action.Kind == "" || action.Summary == "" {
		return Decision{}, Permanent(errors.New("RequestApproval: an action needs a kind and a summary"))
	}
	s, err := x.next("request_approval", vocab.StepKindApproval)
	if err != nil {
		return Decision{}, err
	}
	if s.replayed() {
		return replay[Decision](s)
	}
	if x.sandbox != nil {
		return x.sandboxApproval(ctx, s, action)
	}
	ctx, span := x.traceStep(ctx, s) // trace.go
	defer func() { traceStepped(span, err) }()
	if s.prior != nil && s.prior.Status == vocab.StepWaiting {
		// Resumed while the request is still open (a rescued job): wait again.
		return Decision{}, x.suspend(ctx, s, nil, policy.Decision{})
	}
	if action.Params == nil {
		action.Params = map[string]any{}
	}
	req, pd, err := x.propose(ctx, s, action)
	if err != nil {
		return Decision{}, err
	}
	traceProposed(ctx, pd) // trace.go
	if pd.Tier != vocab.TierAuto {
		return Decision{}, x.suspend(ctx, s, req, pd)
	}
	return x.approveAuto(ctx, s, req, action)
}

// propose checks the proposed action against the output limit, asks the
// policy about it and returns the request it becomes, with the policy's answer.
func (x *execution) propose(ctx context.Context, s *slot, action Action) (*store.Request, policy.Decision, error) {
	raw, err := json.Marshal(action)
	if err != nil {
		return nil, policy.Decision{}, Permanent(fmt.Errorf("encode action: %w", err))
	}
	if err := x.checkOutput(s, "the proposed action", len(raw)); err != nil {
		x.recordFailure(ctx, s, err, 0, 0)
		return nil, policy.Decision{}, err
	}
	pol, err := x.engine.policies.Active(ctx)
	if err != nil {
		return nil, policy.Decision{}, fmt.Errorf("load policy: %w", err)
	}
	pd, err := policy.Evaluate(pol, approval.PolicyInput(action, x.run, approval.Usage{StepsUsed: s.seq, ModelCalls: x.modelCalls, TokensUsed: x.tokens}, x.engine.now()))
	if err != nil {
		return nil, policy.Decision{}, fmt.Errorf("evaluate policy: %w", err)
	}
	req := &store.Request{
		RunID: x.run.ID, StepSeq: s.seq, Workflow: x.run.Workflow, Tier: pd.Tier,
		Status: vocab.RequestPending, ActionKind: action.Kind, Summary: action.Summary, Action: raw,
		PayloadHash: PayloadHash(raw), PolicyVersion: pol.Version, Rule: pd.Rule, Reason: pd.Reason,
		ApprovalsRequired: pd.RequiredApprovals(), Roles: pd.Roles, OnTimeout: pd.OnTimeout,
		EscalateTo: pd.EscalateTo, BatchKey: pd.BatchKey, StartedBy: x.run.StartedBy,
	}
	if pd.Deadline > 0 {
		d := x.engine.now().Add(pd.Deadline)
		req.Deadline = &d
	}
	return req, pd, nil
}

// approveAuto records an action the policy approves by itself, the
// approval step's result and the pure steps held before it, in one
// statement (approval.RecordAuto): one round trip and one commit.
func (x *execution) approveAuto(ctx context.Context, s *slot, req *store.Request, action Action) (Decision, error) {
	dec := approval.AutoDecision(req, action)
	raw, err := json.Marshal(dec)
	if err != nil {
		return Decision{}, Permanent(fmt.Errorf("step %q: encode result: %w", s.name, err))
	}
	if err := x.checkOutput(s, "the result", len(raw)); err != nil {
		x.recordFailure(ctx, s, err, 0, 0)
		return Decision{}, err
	}
	rec := store.StepRecord{RunID: x.run.ID, Seq: s.seq, Name: s.name, Kind: s.kind, Output: raw, Attempts: s.attempts,
		StartedAt: s.started, FinishedAt: x.engine.now(), Owner: x.owner}
	// As record does: a decision that was made is kept, whatever the
	// job's timeout says.
	dec, err = approval.RecordAuto(context.WithoutCancel(ctx), x.engine.pool, req, action, dec, append(slices.Clip(x.pending), rec)...)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Decision{}, ErrCancelled // cancelled, or this execution lost the run
	case errors.Is(err, store.ErrInvalidInput):
		return Decision{}, Permanent(fmt.Errorf("step %q: the approval cannot be stored: %w", s.name, err))
	case err != nil:
		return Decision{}, err
	}
	x.pending = nil
	return dec, nil
}

// suspend records the request (when req is not nil), parks the run as
// waiting_human and completes the River job, all in one transaction.
func (x *execution) suspend(ctx context.Context, s *slot, req *store.Request, pd policy.Decision) error {
	err := x.withTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		if req == nil { // resumed while still waiting: the step keeps its request
			return x.park(ctx, tx, s, s.prior.Output)
		}
		saved, err := x.engine.approvals.Open(ctx, tx, req, pd)
		if err != nil {
			return err
		}
		stepOut, _ := json.Marshal(map[string]string{"request_id": saved.ID})
		return x.park(ctx, tx, s, stepOut)
	})
	if err != nil {
		return err
	}
	x.suspended = true
	return ErrSuspended
}

// park marks the approval step waiting and the run waiting_human, and gives
// up the execution's lease and River job, only if the execution still holds
// the run (ErrCancelled otherwise).
func (x *execution) park(ctx context.Context, tx pgx.Tx, s *slot, stepOut []byte) error {
	if err := x.flushTx(ctx, tx); err != nil {
		return err
	}
	if err := store.StepWait(ctx, tx, store.StepRecord{RunID: x.run.ID, Seq: s.seq, Name: s.name,
		Output: stepOut, Attempts: s.attempts, StartedAt: s.started}); err != nil {
		return err
	}
	if err := store.RunSuspend(ctx, tx, x.run.ID, s.name, sourcesOf(vocab.RunWaitingHuman)); errors.Is(err, store.ErrNotFound) {
		return ErrCancelled
	} else if err != nil {
		return err
	}
	if err := x.complete(ctx, tx); err != nil {
		return err
	}
	return notifyRun(ctx, tx, x.run.ID, vocab.RunWaitingHuman)
}
