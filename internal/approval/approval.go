// Package approval is the human side of the engine: it opens approval
// requests (joining batches, scheduling deadlines), records decisions on one
// request or a whole batch, expires requests at their deadline, and closes
// batches on time. The workflow engine calls it when a run proposes an
// action and moves runs on for it (Runs); the job queue is reached through
// a small Scheduler that jobs/ implements. It never imports the engine.
package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// Scheduler puts future work on the job queue inside the caller's
// transaction, so that a job exists exactly when the state change that needs
// it commits, and vanishes with it on rollback. jobs.Scheduler implements it
// with River; neither this package nor the engine imports River.
type Scheduler interface {
	// EnqueueRun inserts the job that executes run id for resume sequence seq.
	EnqueueRun(ctx context.Context, tx pgx.Tx, runID string, seq int) error
	// EnqueueRuns does the same for many runs with one insert.
	EnqueueRuns(ctx context.Context, tx pgx.Tx, runs []RunRef) error
	// ScheduleRun inserts the job that executes run id for resume sequence
	// seq at at: the wake-up of a run parked at a durable timer or at an
	// event's timeout.
	ScheduleRun(ctx context.Context, tx pgx.Tx, runID string, seq int, at time.Time) error
	// ScheduleDeadline inserts the job that calls Expire for a request at its deadline.
	ScheduleDeadline(ctx context.Context, tx pgx.Tx, requestID string, at time.Time) error
	// ScheduleBatchClose inserts the job that calls CloseBatch at the batch's max_wait.
	ScheduleBatchClose(ctx context.Context, tx pgx.Tx, batchID string, at time.Time) error
}

// RunRef names a run and the resume sequence its next job carries.
type RunRef struct {
	ID  string
	Seq int
}

// Runs moves a waiting run on after a verdict, as the engine's run status
// rules allow. Both return store.ErrNotFound for a run that is not waiting.
type Runs interface {
	// Reject moves a run whose action was rejected: it ends the run, or,
	// for a workflow that handles rejections itself, queues it to resume
	// (resumed true, with its new resume sequence) so that RequestApproval
	// returns the rejected decision to it.
	Reject(ctx context.Context, tx pgx.Tx, runID, workflow string) (seq int, resumed bool, err error)
	// Resume queues a run to continue and returns its new resume sequence.
	Resume(ctx context.Context, tx pgx.Tx, runID string) (seq int, err error)
}

// PolicySource returns the policy in force.
type PolicySource interface {
	Active(ctx context.Context) (*policy.Policy, error)
}

// Config wires a Service; every field is required.
type Config struct {
	Pool      *pgxpool.Pool
	Scheduler Scheduler
	Runs      Runs
	Policies  PolicySource
	Now       func() time.Time
	// OutputLimitFunc returns the largest action, in bytes of JSON, that a
	// run of workflow may propose (and so an edit may make).
	OutputLimitFunc func(workflow string) int
	// Notices receives the notifications requests and decisions cause
	// (nil: none are sent).
	Notices *notice.Outbox
}

// Service opens, decides, batches and expires approval requests.
type Service struct {
	pool        *pgxpool.Pool
	scheduler   Scheduler
	runs        Runs
	policies    PolicySource
	now         func() time.Time
	outputLimit func(workflow string) int
	notices     *notice.Outbox
}

// New returns a Service.
func New(cfg Config) *Service {
	return &Service{pool: cfg.Pool, scheduler: cfg.Scheduler, runs: cfg.Runs, policies: cfg.Policies, now: cfg.Now,
		outputLimit: cfg.OutputLimitFunc, notices: cfg.Notices}
}

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

// Decision is what workflow.RequestApproval returns: the verdict and the
// parameters to apply (the edited ones after an edit).
type Decision struct {
	RequestID     string         `json:"request_id"`
	Verdict       vocab.Verdict  `json:"verdict"`
	Actor         string         `json:"actor"`
	Reason        string         `json:"reason,omitempty"`
	Comment       string         `json:"comment,omitempty"`
	Params        map[string]any `json:"params"`
	Tier          vocab.Tier     `json:"tier"`
	Rule          string         `json:"rule"`
	PolicyVersion int            `json:"policy_version"`
	// For an edit: the rule the edited action fell under and the hash of the
	// edited action (what Params now describe).
	EditedRule        string    `json:"edited_rule,omitempty"`
	EditedPayloadHash string    `json:"edited_payload_hash,omitempty"`
	DecidedAt         time.Time `json:"decided_at"`
}

// Approved reports whether the action may go ahead (approved, or edited and approved).
func (d Decision) Approved() bool {
	return d.Verdict == vocab.VerdictApprove || d.Verdict == vocab.VerdictEdit
}

// ChangesRequested reports whether the reviewer sent the proposal back; the
// feedback is in Reason.
func (d Decision) ChangesRequested() bool { return d.Verdict == vocab.VerdictRequestChanges }

// PayloadHash is the hash that binds a decision to the action the reviewer saw.
func PayloadHash(raw json.RawMessage) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// Usage is how much of its budgets a run had used when it proposed an action.
type Usage struct {
	StepsUsed, ModelCalls, TokensUsed int
}

// PolicyInput is what the policy sees of an action a run proposes. A
// proposal and an edit of it are both judged through this one mapping, so
// that an edit can never be evaluated on other terms than the original.
func PolicyInput(a Action, run *store.Run, u Usage, now time.Time) policy.Input {
	var input map[string]any
	_ = json.Unmarshal(run.Input, &input) // the input was checked as JSON when the run started
	return policy.Input{
		Action: policy.Action{Kind: a.Kind, Target: a.Target, Summary: a.Summary,
			Params: policyNumbers(a.Params), Risk: a.Risk, Reversible: a.Reversible, EstimatedCost: a.EstimatedCost},
		Run: policy.Run{Workflow: run.Workflow, BusinessKey: run.BusinessKey, Input: input,
			Attempt: run.Attempt, StepsUsed: u.StepsUsed, ModelCalls: u.ModelCalls, TokensUsed: u.TokensUsed},
		Now: now,
	}
}

// policyNumbers returns params with every json.Number (the approvals API
// keeps numbers as written, so that large integers are executed exactly)
// as a float64, the number type policy expressions compare with; params
// without one are returned as they are.
func policyNumbers(params map[string]any) map[string]any {
	if params == nil {
		return nil
	}
	out, _ := floatNumbers(params).(map[string]any)
	return out
}

func floatNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		f, _ := v.Float64() // beyond float64's range: ±Inf, as a policy compares it
		return f
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = floatNumbers(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = floatNumbers(x)
		}
		return out
	}
	return v
}
