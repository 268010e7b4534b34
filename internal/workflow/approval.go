package workflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
)

// Action is what a run proposes to do, with everything a reviewer needs to
// judge it. All of it is model-generated data: the console escapes it.
type Action struct {
	Kind          string         `json:"kind"`
	Target        string         `json:"target"`
	Summary       string         `json:"summary"`
	Params        map[string]any `json:"params"`
	Current       map[string]any `json:"current,omitempty"` // present state, for a diff against Params
	Risk          string         `json:"risk"`              // low, medium or high
	Reversible    bool           `json:"reversible"`
	EstimatedCost float64        `json:"estimated_cost"`
	Rationale     string         `json:"rationale"`
	Checks        []Check        `json:"checks,omitempty"`
}

// Check is one automated check of a proposed action and its result.
type Check struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail,omitempty"`
}

// Verdicts a decision can carry.
const (
	Approve        = "approve"
	Reject         = "reject"
	Edit           = "edit"
	RequestChanges = "request_changes"
)

// Decision is what RequestApproval returns: the verdict and the parameters to
// apply (the edited ones after an edit).
type Decision struct {
	RequestID     string         `json:"request_id"`
	Verdict       string         `json:"verdict"`
	Actor         string         `json:"actor"`
	Reason        string         `json:"reason,omitempty"`
	Comment       string         `json:"comment,omitempty"`
	Params        map[string]any `json:"params"`
	Tier          string         `json:"tier"`
	Rule          string         `json:"rule"`
	PolicyVersion int            `json:"policy_version"`
	// For an edit: the rule the edited action fell under and the hash of the
	// edited action (what Params now describe).
	EditedRule        string    `json:"edited_rule,omitempty"`
	EditedPayloadHash string    `json:"edited_payload_hash,omitempty"`
	DecidedAt         time.Time `json:"decided_at"`
}

// Approved reports whether the action may go ahead (approved, or edited and approved).
func (d Decision) Approved() bool { return d.Verdict == Approve || d.Verdict == Edit }

// ChangesRequested reports whether the reviewer sent the proposal back; the
// feedback is in Reason.
func (d Decision) ChangesRequested() bool { return d.Verdict == RequestChanges }

// PayloadHash is the hash that binds a decision to the action the reviewer saw.
func PayloadHash(raw json.RawMessage) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// RequestApproval is the human gate. It asks the policy: an auto action is
// approved, recorded and returned at once; a batched or explicit one becomes
// an approval request, the run waits for a human, and the function unwinds
// with ErrSuspended (return it as it is). When a decision resumes the run, the
// replay reaches this call again and it returns that decision. A rejection
// ends the run; it never returns here.
func RequestApproval(ctx context.Context, action Action) (Decision, error) {
	x, err := executionFrom(ctx)
	if err != nil {
		return Decision{}, err
	}
	if action.Kind == "" || action.Summary == "" {
		return Decision{}, Permanent(errors.New("RequestApproval: an action needs a kind and a summary"))
	}
	s, err := x.next("request_approval", store.StepKindApproval)
	if err != nil {
		return Decision{}, err
	}
	if s.replayed() {
		return replay[Decision](s)
	}
	if s.prior != nil && s.prior.Status == store.StepWaiting {
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
	if pd.Tier != policy.Auto {
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
	pd, err := policy.Evaluate(pol, policyInput(action, x.run, usage{StepsUsed: s.seq, ModelCalls: x.modelCalls, TokensUsed: x.tokens}, x.engine.now()))
	if err != nil {
		return nil, policy.Decision{}, fmt.Errorf("evaluate policy: %w", err)
	}
	req := &store.Request{
		RunID: x.run.ID, StepSeq: s.seq, Workflow: x.run.Workflow, Tier: string(pd.Tier),
		Status: store.RequestPending, ActionKind: action.Kind, Summary: action.Summary, Action: raw,
		PayloadHash: PayloadHash(raw), PolicyVersion: pol.Version, Rule: pd.Rule, Reason: pd.Reason,
		ApprovalsRequired: max(pd.Approvals, 1), Roles: pd.Roles, OnTimeout: pd.OnTimeout,
		EscalateTo: pd.EscalateTo, BatchKey: pd.BatchKey, StartedBy: x.run.StartedBy,
	}
	if pd.Deadline > 0 {
		d := x.engine.now().Add(pd.Deadline)
		req.Deadline = &d
	}
	return req, pd, nil
}

// approveAuto records an action the policy approves by itself (actor
// policy:<rule>): the request, its decision, the step's result and the
// decision.auto event, in one transaction.
func (x *execution) approveAuto(ctx context.Context, s *slot, req *store.Request, action Action) (Decision, error) {
	actor := "policy:" + req.Rule
	req.Status, req.DecidedBy = store.RequestApproved, &actor
	return store.WithTxV(ctx, x.engine.pool, func(ctx context.Context, tx pgx.Tx) (Decision, error) {
		saved, err := store.RequestInsert(ctx, tx, req)
		if err != nil {
			return Decision{}, err
		}
		if _, err := store.DecisionInsert(ctx, tx, &store.Decision{
			RequestID: saved.ID, RunID: x.run.ID, Actor: actor, Verdict: Approve, Reason: req.Reason,
			PayloadHash: saved.PayloadHash, PolicyVersion: req.PolicyVersion, Rule: req.Rule, Tier: saved.Tier,
		}); err != nil {
			return Decision{}, err
		}
		dec := Decision{RequestID: saved.ID, Verdict: Approve, Actor: actor, Reason: req.Reason, Params: action.Params,
			Tier: saved.Tier, Rule: req.Rule, PolicyVersion: req.PolicyVersion, DecidedAt: saved.CreatedAt}
		if err := x.record(ctx, s, dec, 0, 0, tx); err != nil {
			return Decision{}, err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Actor: actor, Subject: audit.RequestSubject(saved.ID), RunID: x.run.ID,
			Details: audit.DecisionAuto{Verdict: Approve, Workflow: saved.Workflow, ActionKind: action.Kind, Summary: action.Summary,
				PayloadHash: saved.PayloadHash, PolicyVersion: req.PolicyVersion, Rule: req.Rule, Reason: req.Reason, Tier: saved.Tier}})
		return dec, err
	})
}

// usage is how much of its budgets a run had used when it proposed an action.
type usage struct {
	StepsUsed, ModelCalls, TokensUsed int
}

// policyInput is what the policy sees of an action a run proposes. A
// proposal and an edit of it are both judged through this one mapping, so
// that an edit can never be evaluated on other terms than the original.
func policyInput(a Action, run *store.Run, u usage, now time.Time) policy.Input {
	var input map[string]any
	_ = json.Unmarshal(run.Input, &input) // the input was checked as JSON when the run started
	return policy.Input{
		Action: policy.Action{Kind: a.Kind, Target: a.Target, Summary: a.Summary,
			Params: a.Params, Risk: a.Risk, Reversible: a.Reversible, EstimatedCost: a.EstimatedCost},
		Run: policy.Run{Workflow: run.Workflow, BusinessKey: run.BusinessKey, Input: input,
			Attempt: run.Attempt, StepsUsed: u.StepsUsed, ModelCalls: u.ModelCalls, TokensUsed: u.TokensUsed},
		Now: now,
	}
}

// suspend records the request (when req is not nil), parks the run as
// waiting_human and completes the River job, all in one transaction.
func (x *execution) suspend(ctx context.Context, s *slot, req *store.Request, pd policy.Decision) error {
	err := store.WithTx(ctx, x.engine.pool, func(ctx context.Context, tx pgx.Tx) error {
		if req == nil { // resumed while still waiting: the step keeps its request
			return x.park(ctx, tx, s, s.prior.Output)
		}
		stepOut, err := x.openRequest(ctx, tx, req, pd)
		if err != nil {
			return err
		}
		return x.park(ctx, tx, s, stepOut)
	})
	if err != nil {
		return err
	}
	x.suspended = true
	return ErrSuspended
}

// openRequest inserts a human request with its approval.requested event,
// joins its batch and schedules its deadline, and signals the inbox. It
// returns the approval step's output, which names the request.
func (x *execution) openRequest(ctx context.Context, tx pgx.Tx, req *store.Request, pd policy.Decision) ([]byte, error) {
	saved, err := store.RequestInsert(ctx, tx, req)
	if err != nil {
		return nil, err
	}
	if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RequestSubject(saved.ID), RunID: x.run.ID,
		Details: audit.ApprovalRequested{Tier: saved.Tier, Workflow: saved.Workflow, ActionKind: saved.ActionKind, Summary: saved.Summary,
			PayloadHash: saved.PayloadHash, Shown: json.RawMessage(saved.Action),
			PolicyVersion: saved.PolicyVersion, Rule: saved.Rule, Reason: saved.Reason,
			ApprovalsRequired: saved.ApprovalsRequired, Deadline: saved.Deadline}}); err != nil {
		return nil, err
	}
	if err := x.engine.schedule(ctx, tx, saved, pd); err != nil {
		return nil, err
	}
	if err := notify.Send(ctx, tx, notify.Message{Type: notify.KindRequest, ID: saved.ID, RunID: x.run.ID, Tier: saved.Tier}); err != nil {
		return nil, err
	}
	return json.Marshal(map[string]string{"request_id": saved.ID})
}

// park marks the approval step waiting and the run waiting_human, and gives
// up the execution's lease and River job, only if the execution still holds
// the run (ErrCancelled otherwise).
func (x *execution) park(ctx context.Context, tx pgx.Tx, s *slot, stepOut []byte) error {
	if err := store.StepWait(ctx, tx, store.StepRecord{RunID: x.run.ID, Seq: s.seq, Name: s.name,
		Output: stepOut, Attempts: s.attempts, StartedAt: s.started}); err != nil {
		return err
	}
	if err := store.RunSuspend(ctx, tx, x.run.ID, s.name, sourcesOf(store.RunWaitingHuman)); errors.Is(err, store.ErrNotFound) {
		return ErrCancelled
	} else if err != nil {
		return err
	}
	if err := x.complete(ctx, tx); err != nil {
		return err
	}
	return notifyRun(ctx, tx, x.run.ID, store.RunWaitingHuman)
}
