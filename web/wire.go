package web

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/ask"
	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// The API's answers, one type per shape (riverui's one struct per endpoint).
// docs/openapi.yaml is the contract: these types, not the store's rows, say
// what a client receives, so that renaming a column or a store field changes
// nothing on the wire. wire_test.go holds each against the spec. Status,
// tier and kind fields are converted with string() so that typed values
// from the layers below fit unchanged.

// runJSON is the spec's Run.
type runJSON struct {
	ID           string          `json:"id"`
	Workflow     string          `json:"workflow"`
	Version      int             `json:"version"`
	BusinessKey  string          `json:"business_key"`
	Status       string          `json:"status"`
	Input        json.RawMessage `json:"input"`
	Output       json.RawMessage `json:"output,omitempty"`
	ErrorCode    *string         `json:"error_code,omitempty"`
	ErrorMessage *string         `json:"error_message,omitempty"`
	Attempt      int             `json:"attempt"`
	CurrentStep  string          `json:"current_step"`
	ResumeSeq    int             `json:"resume_seq"`
	StepsUsed    int             `json:"steps_used"`
	ModelCalls   int             `json:"model_calls"`
	TokensUsed   int             `json:"tokens_used"`
	StartedBy    string          `json:"started_by"`
	Failures     int             `json:"failures"`
	Recoveries   int             `json:"recoveries"`
	// CompensationCause: why the run undid (or undoes) its effects.
	CompensationCause *string    `json:"compensation_cause,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
	FinishedAt        *time.Time `json:"finished_at,omitempty"`
}

func runOf(r *store.Run) runJSON {
	return runJSON{ID: r.ID, Workflow: r.Workflow, Version: r.Version, BusinessKey: r.BusinessKey, Status: string(r.Status),
		Input: r.Input, Output: r.Output, ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMessage,
		Attempt: r.Attempt, CurrentStep: r.CurrentStep, ResumeSeq: r.ResumeSeq, StepsUsed: r.StepsUsed,
		ModelCalls: r.ModelCalls, TokensUsed: r.TokensUsed, StartedBy: r.StartedBy, Failures: r.Failures,
		Recoveries: r.Recoveries, CompensationCause: r.CompensationCause, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		FinishedAt: r.FinishedAt}
}

// stepJSON is the spec's Step.
type stepJSON struct {
	RunID      string          `json:"run_id"`
	Seq        int             `json:"seq"`
	Name       string          `json:"name"`
	Kind       string          `json:"kind"`
	Status     string          `json:"status"`
	Output     json.RawMessage `json:"output,omitempty"`
	Error      *string         `json:"error,omitempty"`
	Attempts   int             `json:"attempts"`
	Tokens     int             `json:"tokens"`
	StartedAt  time.Time       `json:"started_at"`
	FinishedAt *time.Time      `json:"finished_at,omitempty"`
	WakeAt     *time.Time      `json:"wake_at,omitempty"`
	// FailedAttempts are the step's failed attempts, oldest first.
	FailedAttempts []attemptJSON `json:"failed_attempts,omitempty"`
}

// attemptJSON is the spec's StepAttempt.
type attemptJSON struct {
	Attempt    int        `json:"attempt"`
	Error      string     `json:"error"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt time.Time  `json:"finished_at"`
	RetryAt    *time.Time `json:"retry_at,omitempty"`
}

// stepsOf converts a run's steps with their failed attempts.
func stepsOf(steps []*store.Step, attempts []*store.StepAttempt) []stepJSON {
	out := mapSlice(steps, stepOf)
	bySeq := map[int]int{}
	for i, s := range steps {
		bySeq[s.Seq] = i
	}
	for _, a := range attempts {
		if i, ok := bySeq[a.Seq]; ok {
			out[i].FailedAttempts = append(out[i].FailedAttempts, attemptJSON{Attempt: a.Attempt, Error: a.Error,
				StartedAt: a.StartedAt, FinishedAt: a.FinishedAt, RetryAt: a.RetryAt})
		}
	}
	return out
}

func stepOf(s *store.Step) stepJSON {
	return stepJSON{RunID: s.RunID, Seq: s.Seq, Name: s.Name, Kind: string(s.Kind), Status: string(s.Status),
		Output: s.Output, Error: s.Error, Attempts: s.Attempts, Tokens: s.Tokens, StartedAt: s.StartedAt,
		FinishedAt: s.FinishedAt, WakeAt: s.WakeAt}
}

// eventJSON is the spec's RunEvent: an event delivered to a run.
type eventJSON struct {
	ID             int64     `json:"id"`
	RunID          string    `json:"run_id"`
	Name           string    `json:"name"`
	IdempotencyKey string    `json:"idempotency_key"`
	ReceivedAt     time.Time `json:"received_at"`
}

// unusableJSON is the spec's Unusable: a completed run flagged unusable.
type unusableJSON struct {
	RunID     string                 `json:"run_id"`
	Workflow  string                 `json:"workflow"`
	Category  vocab.UnusableCategory `json:"category"`
	Reason    string                 `json:"reason"`
	FlaggedBy string                 `json:"flagged_by"`
	CreatedAt time.Time              `json:"created_at"`
}

func unusableOf(u *store.Unusable) unusableJSON {
	return unusableJSON{RunID: u.RunID, Workflow: u.Workflow, Category: u.Category, Reason: u.Reason, FlaggedBy: u.FlaggedBy, CreatedAt: u.CreatedAt}
}

func eventOf(e *store.Event) eventJSON {
	return eventJSON{ID: e.ID, RunID: e.RunID, Name: e.Name, IdempotencyKey: e.IdempotencyKey, ReceivedAt: e.ReceivedAt}
}

// requestJSON is the spec's Request.
type requestJSON struct {
	ID                string          `json:"id"`
	RunID             string          `json:"run_id"`
	StepSeq           int             `json:"step_seq"`
	Workflow          string          `json:"workflow"`
	Tier              string          `json:"tier"`
	Status            string          `json:"status"`
	ActionKind        string          `json:"action_kind"`
	Summary           string          `json:"summary"`
	Action            json.RawMessage `json:"action"`
	PayloadHash       string          `json:"payload_hash"`
	PolicyVersion     int             `json:"policy_version"`
	Rule              string          `json:"rule"`
	Reason            string          `json:"reason"`
	ApprovalsRequired int             `json:"approvals_required"`
	Roles             []string        `json:"roles"`
	Deadline          *time.Time      `json:"deadline,omitempty"`
	OnTimeout         string          `json:"on_timeout,omitempty"`
	EscalateTo        []string        `json:"escalate_to,omitempty"`
	EscalatedAt       *time.Time      `json:"escalated_at,omitempty"`
	BatchKey          string          `json:"batch_key,omitempty"`
	BatchID           *string         `json:"batch_id,omitempty"`
	Note              string          `json:"note,omitempty"`
	StartedBy         string          `json:"started_by"`
	CreatedAt         time.Time       `json:"created_at"`
	DecidedAt         *time.Time      `json:"decided_at,omitempty"`
	DecidedBy         *string         `json:"decided_by,omitempty"`
}

func requestOf(r *store.Request) *requestJSON {
	if r == nil {
		return nil
	}
	out := &requestJSON{ID: r.ID, RunID: r.RunID, StepSeq: r.StepSeq, Workflow: r.Workflow, Tier: string(r.Tier),
		Status: string(r.Status), ActionKind: r.ActionKind, Summary: r.Summary, Action: r.Action,
		PayloadHash: r.PayloadHash, PolicyVersion: r.PolicyVersion, Rule: r.Rule, Reason: r.Reason,
		ApprovalsRequired: r.ApprovalsRequired, Deadline: r.Deadline, OnTimeout: string(r.OnTimeout),
		EscalatedAt: r.EscalatedAt, BatchKey: r.BatchKey, BatchID: r.BatchID, Note: r.Note,
		StartedBy: r.StartedBy, CreatedAt: r.CreatedAt, DecidedAt: r.DecidedAt, DecidedBy: r.DecidedBy}
	out.Roles = stringList(r.Roles)
	out.EscalateTo = stringList(r.EscalateTo)
	return out
}

// decisionJSON is the spec's Decision.
type decisionJSON struct {
	ID                  int64           `json:"id"`
	RequestID           string          `json:"request_id"`
	RunID               string          `json:"run_id"`
	Actor               string          `json:"actor"`
	Verdict             string          `json:"verdict"`
	Reason              string          `json:"reason,omitempty"`
	Comment             string          `json:"comment,omitempty"`
	EditedParams        json.RawMessage `json:"edited_params,omitempty"`
	Diff                json.RawMessage `json:"diff,omitempty"`
	PayloadHash         string          `json:"payload_hash"`
	PolicyVersion       int             `json:"policy_version"`
	Rule                string          `json:"rule"`
	Tier                string          `json:"tier"`
	BatchDecisionID     *string         `json:"batch_decision_id,omitempty"`
	EditedRule          *string         `json:"edited_rule,omitempty"`
	EditedPolicyVersion *int            `json:"edited_policy_version,omitempty"`
	EditedPayloadHash   *string         `json:"edited_payload_hash,omitempty"`
	CreatedAt           time.Time       `json:"created_at"`
}

func decisionOf(d *store.Decision) *decisionJSON {
	if d == nil {
		return nil
	}
	return &decisionJSON{ID: d.ID, RequestID: d.RequestID, RunID: d.RunID, Actor: d.Actor,
		Verdict: string(d.Verdict), Reason: d.Reason, Comment: d.Comment, EditedParams: d.EditedParams,
		Diff: d.Diff, PayloadHash: d.PayloadHash, PolicyVersion: d.PolicyVersion, Rule: d.Rule,
		Tier: string(d.Tier), BatchDecisionID: d.BatchDecisionID, EditedRule: d.EditedRule,
		EditedPolicyVersion: d.EditedPolicyVersion, EditedPayloadHash: d.EditedPayloadHash, CreatedAt: d.CreatedAt}
}

// batchJSON is a batch as GET /api/v1/batches lists it.
type batchJSON struct {
	ID         string     `json:"id"`
	GroupKey   string     `json:"group_key"`
	Rule       string     `json:"rule"`
	Workflow   string     `json:"workflow"`
	ActionKind string     `json:"action_kind"`
	Status     string     `json:"status"`
	MaxSize    int        `json:"max_size"`
	Size       int        `json:"size"`
	OpenedAt   time.Time  `json:"opened_at"`
	ClosesAt   time.Time  `json:"closes_at"`
	ClosedAt   *time.Time `json:"closed_at,omitempty"`
	DecidedAt  *time.Time `json:"decided_at,omitempty"`
	Pending    int        `json:"pending"`
	Deadline   *time.Time `json:"deadline,omitempty"`
}

func batchOf(b *store.Batch) batchJSON {
	return batchJSON{ID: b.ID, GroupKey: b.GroupKey, Rule: b.Rule, Workflow: b.Workflow, ActionKind: b.ActionKind,
		Status: string(b.Status), MaxSize: b.MaxSize, Size: b.Size, OpenedAt: b.OpenedAt, ClosesAt: b.ClosesAt,
		ClosedAt: b.ClosedAt, DecidedAt: b.DecidedAt, Pending: b.Pending, Deadline: b.Deadline}
}

// runWithStepsJSON answers GET /api/v1/runs/{id}.
type runWithStepsJSON struct {
	runJSON
	Steps []stepJSON `json:"steps"`
}

// runPageJSON answers GET /api/v1/runs.
type runPageJSON struct {
	Runs []runJSON `json:"runs"`
	Next string    `json:"next,omitempty"`
}

// requestPageJSON answers GET /api/v1/requests.
type requestPageJSON struct {
	Requests []*requestJSON `json:"requests"`
	Next     string         `json:"next,omitempty"`
}

// requestDetailJSON answers GET /api/v1/requests/{id}.
type requestDetailJSON struct {
	*requestJSON
	Votes    []string      `json:"votes"`
	Decision *decisionJSON `json:"decision"`
}

// decideJSON answers POST /api/v1/requests/{id}/decision.
type decideJSON struct {
	Approvals         int           `json:"approvals"`
	ApprovalsRequired int           `json:"approvals_required"`
	Decision          *decisionJSON `json:"decision"`
	Request           *requestJSON  `json:"request"`
	Status            string        `json:"status"`
}

// Statuses of decideJSON.
const (
	decideDecided              = "decided"
	decideAwaitingMoreApproval = "awaiting_more_approvals"
)

// batchPageJSON answers GET /api/v1/batches.
type batchPageJSON struct {
	Batches []batchJSON `json:"batches"`
}

// batchDetailJSON answers GET /api/v1/batches/{id}.
type batchDetailJSON struct {
	Batch batchJSON      `json:"batch"`
	Items []*requestJSON `json:"items"`
}

// itemOutcomeJSON is what a batch decision did to one item.
type itemOutcomeJSON struct {
	RequestID string `json:"request_id"`
	Outcome   string `json:"outcome"`
	Note      string `json:"note,omitempty"`
}

// batchDecisionJSON answers POST /api/v1/batches/{id}/decision.
type batchDecisionJSON struct {
	DecisionID string            `json:"batch_decision_id"`
	Approved   int               `json:"approved"`
	Rejected   int               `json:"rejected"`
	LeftOut    int               `json:"left_out"`
	Refused    []itemOutcomeJSON `json:"refused"`
	Items      []itemOutcomeJSON `json:"items"`
	Resumed    int               `json:"resumed"`
}

func batchDecisionOf(r *workflow.BatchResult) batchDecisionJSON {
	return batchDecisionJSON{DecisionID: r.DecisionID, Approved: r.Approved, Rejected: r.Rejected,
		LeftOut: r.LeftOut, Refused: outcomesOf(r.Refused), Items: outcomesOf(r.Items), Resumed: r.Resumed}
}

// outcomesOf keeps nil as nil: the engine's empty Refused list is [] on the
// wire and an absent Items list is null, as they always were.
func outcomesOf(in []workflow.ItemOutcome) []itemOutcomeJSON {
	if in == nil {
		return nil
	}
	out := make([]itemOutcomeJSON, len(in))
	for i, o := range in {
		out[i] = itemOutcomeJSON{RequestID: o.RequestID, Outcome: string(o.Outcome), Note: o.Note}
	}
	return out
}

// auditPageJSON answers GET /api/v1/audit; an event has the shape of a line
// of the JSON Lines export (audit.Line), which is its own contract.
type auditPageJSON struct {
	Events []audit.Line `json:"events"`
	Next   string       `json:"next,omitempty"`
}

// statusJSON answers /healthz and /readyz.
type statusJSON struct {
	Status string `json:"status"`
}

// pendingJSON answers /readyz while migrations are pending.
type pendingJSON struct {
	Pending int    `json:"pending"`
	Status  string `json:"status"`
}

// mapSlice converts every row of a page, and gives [] rather than null for
// an empty one.
func mapSlice[S, T any](in []S, f func(S) T) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

// stringList copies a list of string-like values, keeping nil as nil.
func stringList[T ~string](in []T) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}

// receiptJSON is the spec's Receipt. Claims are the payload's own bytes,
// decoded from base64url, so that what a client reads is exactly what was
// signed.
type receiptJSON struct {
	KeyID     string          `json:"key_id"`
	Payload   string          `json:"payload"`
	Signature string          `json:"signature"`
	Claims    json.RawMessage `json:"claims"`
}

func receiptOf(r *receipt.Receipt) (*receiptJSON, error) {
	claims, err := base64.RawURLEncoding.DecodeString(r.Payload)
	if err != nil {
		return nil, fmt.Errorf("receipt payload: %w", err)
	}
	return &receiptJSON{KeyID: r.KeyID, Payload: r.Payload, Signature: r.Signature, Claims: claims}, nil
}

// receiptKeyJSON is the spec's ReceiptKey.
type receiptKeyJSON struct {
	KeyID     string     `json:"key_id"`
	Algorithm string     `json:"algorithm"`
	PublicKey string     `json:"public_key"`
	CreatedAt time.Time  `json:"created_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"`
}

// receiptKeysJSON is the keys document.
type receiptKeysJSON struct {
	Keys []receiptKeyJSON `json:"keys"`
}

func receiptKeyOf(k receipt.PublicKey) receiptKeyJSON {
	return receiptKeyJSON{KeyID: k.KeyID, Algorithm: k.Algorithm, PublicKey: k.PublicKey, CreatedAt: k.CreatedAt, RetiredAt: k.RetiredAt}
}

// approvalJSON is an approval as the API answers it. It is ask.Approval
// itself, not a copy: the API answer, the callback's body and the MCP
// tools' result are one shape, which TestWireMatchesSpec holds against the
// spec like every wire type here.
type approvalJSON = ask.Approval
