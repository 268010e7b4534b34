package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"

	"github.com/countersign/countersign/vocab"
)

// Request is an approval request: an action a run proposed, with the policy's
// verdict on it.
type Request struct {
	ID                string              `json:"id"`
	RunID             string              `json:"run_id"`
	StepSeq           int                 `json:"step_seq"`
	Workflow          string              `json:"workflow"`
	Tier              vocab.Tier          `json:"tier"`
	Status            vocab.RequestStatus `json:"status"`
	ActionKind        string              `json:"action_kind"`
	Summary           string              `json:"summary"`
	Action            json.RawMessage     `json:"action"`
	PayloadHash       string              `json:"payload_hash"`
	PolicyVersion     int                 `json:"policy_version"`
	Rule              string              `json:"rule"`
	Reason            string              `json:"reason"`
	ApprovalsRequired int                 `json:"approvals_required"`
	Roles             []vocab.Role        `json:"roles"`
	Deadline          *time.Time          `json:"deadline,omitempty"`
	OnTimeout         string              `json:"on_timeout,omitempty"`
	EscalateTo        []vocab.Role        `json:"escalate_to,omitempty"`
	EscalatedAt       *time.Time          `json:"escalated_at,omitempty"`
	BatchKey          string              `json:"batch_key,omitempty"`
	BatchID           *string             `json:"batch_id,omitempty"`
	Note              string              `json:"note,omitempty"`
	StartedBy         string              `json:"started_by"`
	CreatedAt         time.Time           `json:"created_at"`
	DecidedAt         *time.Time          `json:"decided_at,omitempty"`
	DecidedBy         *string             `json:"decided_by,omitempty"`
}

// requestFromInternal converts a generated row to the exported Request.
func requestFromInternal(r *dbsqlc.ApprovalRequest) *Request {
	return &Request{
		ID: r.ID, RunID: r.RunID, StepSeq: r.StepSeq, Workflow: r.Workflow, Tier: vocab.Tier(r.Tier), Status: vocab.RequestStatus(r.Status),
		ActionKind: r.ActionKind, Summary: r.Summary, Action: r.Action, PayloadHash: r.PayloadHash,
		PolicyVersion: r.PolicyVersion, Rule: r.Rule, Reason: r.Reason, ApprovalsRequired: r.ApprovalsRequired,
		Roles: roles(r.Roles), Deadline: r.Deadline, OnTimeout: r.OnTimeout, EscalateTo: roles(r.EscalateTo),
		EscalatedAt: r.EscalatedAt, BatchKey: r.BatchKey, BatchID: r.BatchID, Note: r.Note,
		StartedBy: r.StartedBy, CreatedAt: r.CreatedAt, DecidedAt: r.DecidedAt, DecidedBy: r.DecidedBy,
	}
}

// requestResult converts the outcome of a query returning one request.
func requestResult(r *dbsqlc.ApprovalRequest, err error) (*Request, error) {
	if err != nil {
		return nil, interpret(err)
	}
	return requestFromInternal(r), nil
}

// requestsResult converts the outcome of a query listing requests.
func requestsResult(rows []*dbsqlc.ApprovalRequest, err error) ([]*Request, error) {
	if err != nil {
		return nil, fmt.Errorf("list requests: %w", interpret(err))
	}
	return convertAll(rows, requestFromInternal), nil
}

// RequestInsert stores a new approval request. For the auto tier pass
// Status "approved" with DecidedBy set: the request is decided as it is made.
func RequestInsert(ctx context.Context, db DBTX, r *Request) (*Request, error) {
	out, err := requestResult(queries.RequestInsert(ctx, db, dbsqlc.RequestInsertParams{
		RunID: r.RunID, StepSeq: r.StepSeq, Workflow: r.Workflow, Tier: string(r.Tier), Status: string(r.Status),
		ActionKind: r.ActionKind, Summary: r.Summary, Action: r.Action, PayloadHash: r.PayloadHash,
		PolicyVersion: r.PolicyVersion, Rule: r.Rule, Reason: r.Reason, ApprovalsRequired: r.ApprovalsRequired,
		Roles: roleNames(r.Roles), Deadline: r.Deadline, OnTimeout: r.OnTimeout, EscalateTo: roleNames(r.EscalateTo),
		BatchKey: r.BatchKey, StartedBy: r.StartedBy, DecidedBy: r.DecidedBy,
	}))
	if err != nil {
		return nil, fmt.Errorf("insert request: %w", err)
	}
	return out, nil
}

// AutoEvent is the audit event RequestRecordAuto appends for the request
// it records: its kind and details; the subject is the request.
type AutoEvent struct {
	Kind    string
	Details any
}

// RequestRecordAuto records an action the policy approves by itself, in one
// statement: r, already approved by actor, its decision, ev and the steps
// (the approval step last, after the pure steps held before it), as
// StepComplete stores them. The approval step's output gets the request's
// id and time as request_id and decided_at. It returns the stored request,
// or ErrNotFound, having stored nothing, when the steps' owner no longer
// holds the running run.
func RequestRecordAuto(ctx context.Context, db DBTX, r *Request, actor string, ev AutoEvent, steps ...StepRecord) (*Request, error) {
	if len(steps) == 0 || steps[len(steps)-1].Seq != r.StepSeq {
		return nil, fmt.Errorf("%w: an auto-approved request is recorded with its approval step", ErrInvalidInput)
	}
	last := steps[len(steps)-1]
	batch, err := encodeSteps(steps)
	if err != nil {
		return nil, fmt.Errorf("record auto-approved request: %w", err)
	}
	details, err := json.Marshal(ev.Details)
	if err != nil {
		return nil, fmt.Errorf("%w: encode audit details: %v", ErrInvalidInput, err)
	}
	p := dbsqlc.RequestRecordAutoParams{
		CurrentStep: last.Name, StepsUsed: last.Seq + 1, RunID: r.RunID, Owner: &last.Owner,
		StepSeq: r.StepSeq, Workflow: r.Workflow, Tier: string(r.Tier), ActionKind: r.ActionKind, Summary: r.Summary,
		Action: r.Action, PayloadHash: r.PayloadHash, PolicyVersion: r.PolicyVersion, Rule: r.Rule, Reason: r.Reason,
		ApprovalsRequired: r.ApprovalsRequired, Roles: roleNames(r.Roles), Deadline: r.Deadline, OnTimeout: r.OnTimeout,
		EscalateTo: roleNames(r.EscalateTo), BatchKey: r.BatchKey, StartedBy: r.StartedBy, Actor: actor,
		EventKind: ev.Kind, EventDetails: details, Steps: batch,
	}
	for _, s := range steps {
		p.TokensTotal += s.Tokens
		p.ModelCalls += s.ModelCalls
	}
	row, err := queries.RequestRecordAuto(ctx, db, p)
	if err != nil {
		return nil, fmt.Errorf("record auto-approved request: %w", interpret(err))
	}
	return requestFromInternal((*dbsqlc.ApprovalRequest)(row)), nil
}

// RequestGet returns one request. Returns ErrNotFound if it does not exist.
func RequestGet(ctx context.Context, db DBTX, id string) (*Request, error) {
	r, err := requestResult(queries.RequestGet(ctx, db, id))
	if err != nil {
		return nil, fmt.Errorf("get request: %w", err)
	}
	return r, nil
}

// RequestGetForUpdate returns one request locked until the transaction ends.
func RequestGetForUpdate(ctx context.Context, db DBTX, id string) (*Request, error) {
	r, err := requestResult(queries.RequestGetForUpdate(ctx, db, id))
	if err != nil {
		return nil, fmt.Errorf("lock request: %w", err)
	}
	return r, nil
}

// RequestDecide moves a pending request whose payload hash matches to status.
// Only one caller can win: it returns ErrNotFound for every other, and the
// caller reads the row again to say why.
func RequestDecide(ctx context.Context, db DBTX, id, payloadHash, status, actor string) (*Request, error) {
	r, err := requestResult(queries.RequestDecide(ctx, db, dbsqlc.RequestDecideParams{
		ID: id, PayloadHash: payloadHash, Status: status, Actor: &actor}))
	if err != nil {
		return nil, fmt.Errorf("decide request: %w", err)
	}
	return r, nil
}

// RequestCancelForRun cancels a run's pending requests (the run was cancelled).
func RequestCancelForRun(ctx context.Context, db DBTX, runID, actor string) error {
	if err := queries.RequestCancelForRun(ctx, db, dbsqlc.RequestCancelForRunParams{RunID: runID, Actor: &actor}); err != nil {
		return fmt.Errorf("cancel requests: %w", interpret(err))
	}
	return nil
}

// RequestListByRun returns a run's requests in the order they were made.
func RequestListByRun(ctx context.Context, db DBTX, runID string) ([]*Request, error) {
	return requestsResult(queries.RequestListByRun(ctx, db, runID))
}

// VoteAdd records one approver's vote and returns how many distinct approvers
// have voted. A repeated vote by the same actor is counted once.
func VoteAdd(ctx context.Context, db DBTX, requestID, actor, comment string) (int, error) {
	err := queries.VoteInsert(ctx, db, dbsqlc.VoteInsertParams{RequestID: requestID, Actor: actor, Comment: comment})
	if err != nil {
		return 0, fmt.Errorf("add vote: %w", interpret(err))
	}
	n, err := queries.VoteCount(ctx, db, requestID)
	if err != nil {
		return 0, fmt.Errorf("count votes: %w", interpret(err))
	}
	return int(n), nil
}

// VoteList returns who has voted to approve a request.
func VoteList(ctx context.Context, db DBTX, requestID string) ([]string, error) {
	actors, err := queries.VoteList(ctx, db, requestID)
	if err != nil {
		return nil, fmt.Errorf("list votes: %w", interpret(err))
	}
	if actors == nil {
		actors = []string{} // as it has always been: an empty list, not null
	}
	return actors, nil
}

// Vote is one approver's approval of a multi-approval request.
type Vote struct {
	Actor string
	At    time.Time
}

// VoteListTimed lists the approvals of a request with their times, oldest
// first, for the review page's "who approved so far".
func VoteListTimed(ctx context.Context, db DBTX, requestID string) ([]Vote, error) {
	rows, err := queries.VoteListTimed(ctx, db, requestID)
	if err != nil {
		return nil, fmt.Errorf("list votes: %w", interpret(err))
	}
	out := make([]Vote, len(rows))
	for i, r := range rows {
		out[i] = Vote{Actor: r.Actor, At: r.CreatedAt}
	}
	return out, nil
}

// Decision is the final verdict on a request.
type Decision struct {
	ID              int64           `json:"id"`
	RequestID       string          `json:"request_id"`
	RunID           string          `json:"run_id"`
	Actor           string          `json:"actor"`
	Verdict         vocab.Verdict   `json:"verdict"`
	Reason          string          `json:"reason,omitempty"`
	Comment         string          `json:"comment,omitempty"`
	EditedParams    json.RawMessage `json:"edited_params,omitempty"`
	Diff            json.RawMessage `json:"diff,omitempty"`
	PayloadHash     string          `json:"payload_hash"`
	PolicyVersion   int             `json:"policy_version"`
	Rule            string          `json:"rule"`
	Tier            vocab.Tier      `json:"tier"`
	BatchDecisionID *string         `json:"batch_decision_id,omitempty"`
	// For an edit: the rule the edited action fell under when the policy in
	// force judged it again, that policy's version, and the edited action's
	// hash. Rule, PolicyVersion and PayloadHash stay those of the proposal.
	EditedRule          *string   `json:"edited_rule,omitempty"`
	EditedPolicyVersion *int      `json:"edited_policy_version,omitempty"`
	EditedPayloadHash   *string   `json:"edited_payload_hash,omitempty"`
	CreatedAt           time.Time `json:"created_at"`
}

// decisionResult converts the outcome of a query returning one decision.
func decisionResult(d *dbsqlc.Decision, err error) (*Decision, error) {
	if err != nil {
		return nil, interpret(err)
	}
	return &Decision{
		ID: d.ID, RequestID: d.RequestID, RunID: d.RunID, Actor: d.Actor, Verdict: vocab.Verdict(d.Verdict),
		Reason: d.Reason, Comment: d.Comment, EditedParams: d.EditedParams, Diff: d.Diff,
		PayloadHash: d.PayloadHash, PolicyVersion: d.PolicyVersion, Rule: d.Rule, Tier: vocab.Tier(d.Tier),
		BatchDecisionID: d.BatchDecisionID, EditedRule: d.EditedRule, EditedPolicyVersion: d.EditedPolicyVersion,
		EditedPayloadHash: d.EditedPayloadHash, CreatedAt: d.CreatedAt,
	}, nil
}

// DecisionInsert stores a decision. Returns ErrConflict when the request
// already has one.
func DecisionInsert(ctx context.Context, db DBTX, d *Decision) (*Decision, error) {
	out, err := decisionResult(queries.DecisionInsert(ctx, db, dbsqlc.DecisionInsertParams{
		RequestID: d.RequestID, RunID: d.RunID, Actor: d.Actor, Verdict: string(d.Verdict), Reason: d.Reason,
		Comment: d.Comment, EditedParams: d.EditedParams, Diff: d.Diff, PayloadHash: d.PayloadHash,
		PolicyVersion: d.PolicyVersion, Rule: d.Rule, Tier: string(d.Tier), BatchDecisionID: d.BatchDecisionID,
		EditedRule: d.EditedRule, EditedPolicyVersion: d.EditedPolicyVersion, EditedPayloadHash: d.EditedPayloadHash,
	}))
	if err != nil {
		return nil, fmt.Errorf("insert decision: %w", err)
	}
	return out, nil
}

// DecisionGetByRequest returns a request's decision. Returns ErrNotFound when
// it has none.
func DecisionGetByRequest(ctx context.Context, db DBTX, requestID string) (*Decision, error) {
	d, err := decisionResult(queries.DecisionGetByRequest(ctx, db, requestID))
	if err != nil {
		return nil, fmt.Errorf("get decision: %w", err)
	}
	return d, nil
}

// roles types the role names of a row.
func roles(names []string) []vocab.Role {
	out := make([]vocab.Role, len(names))
	for i, n := range names {
		out[i] = vocab.Role(n)
	}
	return out
}

// roleNames is the text[] of roles, never NULL: the columns are NOT NULL.
func roleNames(rs []vocab.Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}

// RunRequest is the latest approval request of a run, as the runs list
// shows it.
type RunRequest struct {
	ID      string
	Summary string
	Status  vocab.RequestStatus
}

// RequestLatestByRuns returns the latest approval request of each of the
// runs named that has one, by run id.
func RequestLatestByRuns(ctx context.Context, db DBTX, runIDs []string) (map[string]RunRequest, error) {
	rows, err := queries.RequestLatestByRuns(ctx, db, runIDs)
	if err != nil {
		return nil, fmt.Errorf("latest requests of runs: %w", interpret(err))
	}
	out := make(map[string]RunRequest, len(rows))
	for _, r := range rows {
		out[r.RunID] = RunRequest{ID: r.ID, Summary: r.Summary, Status: vocab.RequestStatus(r.Status)}
	}
	return out, nil
}

// RequestSummaries returns the summary of each request named that exists,
// by id.
func RequestSummaries(ctx context.Context, db DBTX, ids []string) (map[string]string, error) {
	if ids == nil {
		ids = []string{}
	}
	rows, err := queries.RequestSummaries(ctx, db, ids)
	if err != nil {
		return nil, fmt.Errorf("request summaries: %w", interpret(err))
	}
	out := make(map[string]string, len(rows))
	for _, r := range rows {
		out[r.ID] = r.Summary
	}
	return out, nil
}
