package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store/dbsqlc"
	"github.com/countersign/countersign/vocab"
)

// Run is one execution of a workflow.
type Run struct {
	ID           string          `json:"id"`
	Workflow     string          `json:"workflow"`
	Version      int             `json:"version"` // of its workflow, pinned when it started
	BusinessKey  string          `json:"business_key"`
	Status       vocab.RunStatus `json:"status"`
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
	Failures     int             `json:"failures"`   // error attempts spent
	Recoveries   int             `json:"recoveries"` // times a lost worker's run was handed on
	LeaseOwner   *string         `json:"-"`          // the execution holding the run
	// CompensationCause is why the run is undoing its effects (failed,
	// rejected, cancelled), or nil while it is not.
	CompensationCause *string    `json:"compensation_cause,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
	FinishedAt        *time.Time `json:"finished_at,omitempty"`
	// TraceParent is the W3C traceparent the run's spans descend from
	// (internal/tracing), or "" when tracing was off at its start.
	TraceParent string `json:"-"`
}

// runFromInternal converts a generated row to the exported Run.
func runFromInternal(r *dbsqlc.WorkflowRun) *Run {
	return &Run{
		ID: r.ID, Workflow: r.Workflow, Version: r.Version, BusinessKey: r.BusinessKey, Status: vocab.RunStatus(r.Status),
		Input: r.Input, Output: r.Output, ErrorCode: r.ErrorCode, ErrorMessage: r.ErrorMessage,
		Attempt: r.Attempt, CurrentStep: r.CurrentStep, ResumeSeq: r.ResumeSeq, StepsUsed: r.StepsUsed,
		ModelCalls: r.ModelCalls, TokensUsed: r.TokensUsed, StartedBy: r.StartedBy,
		Failures: r.Failures, Recoveries: r.Recoveries, LeaseOwner: r.LeaseOwner, CompensationCause: r.CompensationCause,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, FinishedAt: r.FinishedAt, TraceParent: deref(r.TraceParent),
	}
}

// runResult converts the outcome of a query returning one run.
func runResult(r *dbsqlc.WorkflowRun, err error) (*Run, error) {
	if err != nil {
		return nil, interpret(err)
	}
	return runFromInternal(r), nil
}

// RunInsertParams describes a run to create.
type RunInsertParams struct {
	Workflow    string
	Version     int // of the workflow, which the run keeps; 0 means 1
	BusinessKey string
	Input       json.RawMessage
	StartedBy   string
	// TraceParent is the traceparent of the span that starts the run ("": none).
	TraceParent string
}

// RunInsert creates a queued run. It returns the existing run and created=false
// when the workflow already has a run with that business key.
func RunInsert(ctx context.Context, db DBTX, p RunInsertParams) (run *Run, created bool, err error) {
	run, err = runResult(queries.RunInsert(ctx, db, dbsqlc.RunInsertParams{
		Workflow: p.Workflow, Version: max(p.Version, 1), BusinessKey: p.BusinessKey, Input: p.Input, StartedBy: p.StartedBy, TraceParent: p.TraceParent}))
	if err == nil {
		return run, true, nil
	}
	// Only "no row returned" means the conflict clause skipped the insert; a
	// refused value (ErrInvalidInput) or any other failure is not "exists".
	if !errors.Is(err, ErrNotFound) {
		return nil, false, fmt.Errorf("insert run: %w", err)
	}
	run, err = runResult(queries.RunGetByKey(ctx, db, dbsqlc.RunGetByKeyParams{Workflow: p.Workflow, BusinessKey: p.BusinessKey}))
	if err != nil {
		return nil, false, fmt.Errorf("get existing run: %w", err)
	}
	return run, false, nil
}

// StartEvent is the audit event a run's start records with it
// (RunInsertClaimed): its kind, its subject's type (the subject is the run)
// and its details, which are encoded as JSON. The actor is the run's
// StartedBy.
type StartEvent struct {
	Kind        string
	SubjectType string
	Details     any
}

// RunInsertClaimed is RunInsert for a run born claimed by owner for lease
// (running, attempt 1, as RunClaim leaves a queued run for its first job),
// with its start's audit event, in one statement on db and one round trip.
// On a pool that statement is its own transaction, which commits without
// waiting for its WAL flush (TxCommitAsync), and so does a transaction it is
// sent in: it is for an execution that starts at once in the inserting
// process (Engine.StartInline), whose first commit flushes the insert's WAL.
// When the business key names a run already, it writes nothing and returns
// that run, as it is, with created false.
func RunInsertClaimed(ctx context.Context, db DBTX, p RunInsertParams, owner string, lease time.Duration, ev StartEvent) (run *Run, created bool, err error) {
	details, err := json.Marshal(ev.Details)
	if err != nil {
		return nil, false, fmt.Errorf("encode audit details: %w", err)
	}
	if string(details) == "null" {
		details = []byte("{}")
	}
	row, err := queries.RunInsertClaimed(ctx, db, dbsqlc.RunInsertClaimedParams{
		Workflow: p.Workflow, Version: max(p.Version, 1), BusinessKey: p.BusinessKey, Input: p.Input, StartedBy: p.StartedBy,
		TraceParent: p.TraceParent, Owner: owner, LeaseMicros: lease.Microseconds(),
		EventKind: ev.Kind, EventSubjectType: ev.SubjectType, EventDetails: details})
	if err == nil {
		r := dbsqlc.WorkflowRun(*row)
		return runFromInternal(&r), true, nil
	}
	// Only "no row returned" means the conflict clause skipped the insert.
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, false, fmt.Errorf("insert run: %w", interpret(err))
	}
	run, err = runResult(queries.RunGetByKey(ctx, db, dbsqlc.RunGetByKeyParams{Workflow: p.Workflow, BusinessKey: p.BusinessKey}))
	if err != nil {
		return nil, false, fmt.Errorf("get existing run: %w", err)
	}
	return run, false, nil
}

// RunGet returns one run. Returns ErrNotFound if it does not exist.
func RunGet(ctx context.Context, db DBTX, id string) (*Run, error) {
	run, err := runResult(queries.RunGet(ctx, db, id))
	if err != nil {
		return nil, fmt.Errorf("get run: %w", err)
	}
	return run, nil
}

// RunGetForUpdate returns one run and locks it until the transaction ends.
func RunGetForUpdate(ctx context.Context, db DBTX, id string) (*Run, error) {
	run, err := runResult(queries.RunGetForUpdate(ctx, db, id))
	if err != nil {
		return nil, fmt.Errorf("lock run: %w", err)
	}
	return run, nil
}

// The functions below move a run's status only from the statuses in from,
// which the caller takes from its transitions table: the table is the one
// place that says how a run's life goes.

// RunClaim marks a run running for the job of resume sequence seq and gives
// the execution owner a lease of the given length. The run's attempt becomes
// its error attempt (failures + 1): a crash spends none. It returns
// ErrNotFound when the run is not in one of from, was resumed by a later job,
// or is running under another execution's live lease.
func RunClaim(ctx context.Context, db DBTX, id string, seq int, from []string, owner string, lease time.Duration) (*Run, error) {
	run, err := runResult(queries.RunClaim(ctx, db, dbsqlc.RunClaimParams{ID: id, ResumeSeq: seq,
		FromStatuses: from, Owner: &owner, LeaseMicros: lease.Microseconds()}))
	if err != nil {
		return nil, fmt.Errorf("claim run: %w", err)
	}
	return run, nil
}

// RunClaimHistory is RunClaim returning also the run's recorded steps, in
// order, as StepList would: one round trip where the two took two.
func RunClaimHistory(ctx context.Context, db DBTX, id string, seq int, from []string, owner string, lease time.Duration) (*Run, []*Step, error) {
	row, err := queries.RunClaimHistory(ctx, db, dbsqlc.RunClaimHistoryParams{ID: id, ResumeSeq: seq,
		FromStatuses: from, Owner: &owner, LeaseMicros: lease.Microseconds()})
	if err != nil {
		return nil, nil, fmt.Errorf("claim run: %w", interpret(err))
	}
	var steps []*Step
	if err := json.Unmarshal(row.Steps, &steps); err != nil {
		return nil, nil, fmt.Errorf("claim run: decode steps: %w", err)
	}
	if len(steps) == 0 {
		steps = nil
	}
	return runFromInternal(&row.WorkflowRun), steps, nil
}

// RunLeaseRenew extends owner's lease on a running run. It returns
// ErrNotFound when owner no longer holds the run: it was swept and handed on,
// cancelled, or ended.
func RunLeaseRenew(ctx context.Context, db DBTX, id, owner string, lease time.Duration) error {
	err := oneRow(queries.RunLeaseRenew(ctx, db, dbsqlc.RunLeaseRenewParams{ID: id, Owner: &owner, LeaseMicros: lease.Microseconds()}))
	if err != nil {
		return fmt.Errorf("renew lease: %w", err)
	}
	return nil
}

// RunLeaseRelease gives up owner's lease, so that the next job may claim the
// run at once (a worker shutting down, a run parked for a human). It returns
// ErrNotFound when owner did not hold the run.
func RunLeaseRelease(ctx context.Context, db DBTX, id, owner string) error {
	if err := oneRow(queries.RunLeaseRelease(ctx, db, dbsqlc.RunLeaseReleaseParams{ID: id, Owner: &owner})); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	return nil
}

// RunSetStatus moves a run from one of the statuses in from to status. It
// returns ErrNotFound when the run is not in one of them.
func RunSetStatus(ctx context.Context, db DBTX, id string, from []string, status string) error {
	if err := oneRow(queries.RunSetStatus(ctx, db, dbsqlc.RunSetStatusParams{ID: id, FromStatuses: from, Status: status})); err != nil {
		return fmt.Errorf("set run status: %w", err)
	}
	return nil
}

// RunComplete records a run's output and marks it completed, if owner
// still holds it, storing in the same statement the completed steps given
// (the run's last pure steps, held in memory until now; none is fine).
// Returns ErrNotFound otherwise (cancelled, or handed on), having stored nothing.
func RunComplete(ctx context.Context, db DBTX, id, owner string, output json.RawMessage, from []string, steps ...StepRecord) error {
	p, err := runCompleteParams(id, owner, output, from, steps)
	if err != nil {
		return err
	}
	if err := oneRow(queries.RunComplete(ctx, db, p)); err != nil {
		return fmt.Errorf("complete run: %w", err)
	}
	return nil
}

func runCompleteParams(id, owner string, output json.RawMessage, from []string, steps []StepRecord) (dbsqlc.RunCompleteParams, error) {
	batch, err := encodeSteps(steps)
	if err != nil {
		return dbsqlc.RunCompleteParams{}, fmt.Errorf("complete run: %w", err)
	}
	p := dbsqlc.RunCompleteParams{ID: id, Output: output, FromStatuses: from, Owner: &owner, Steps: batch}
	if n := len(steps); n > 0 {
		p.CurrentStep, p.StepsUsed = &steps[n-1].Name, steps[n-1].Seq+1
	}
	return p, nil
}

// RunFail records an error on a run that owner holds. With status "failed"
// the run ends; with "retrying" it counts a failure, gives up the lease and
// waits for River's next attempt, and the sweeper looks at it again after
// recheck, in case that attempt never comes. Returns ErrNotFound when owner
// does not hold the run.
func RunFail(ctx context.Context, db DBTX, id, owner, status, code, message string, from []string, recheck time.Duration) error {
	err := oneRow(queries.RunFail(ctx, db, dbsqlc.RunFailParams{ID: id, Owner: &owner, Status: status,
		ErrorCode: code, ErrorMessage: message, FromStatuses: from, RecheckMicros: recheck.Microseconds()}))
	if err != nil {
		return fmt.Errorf("fail run: %w", err)
	}
	return nil
}

// RunSuspend marks a running run as waiting for a human. Returns ErrNotFound
// when the run is not in one of from.
func RunSuspend(ctx context.Context, db DBTX, id, currentStep string, from []string) error {
	err := oneRow(queries.RunSuspend(ctx, db, dbsqlc.RunSuspendParams{ID: id, CurrentStep: currentStep, FromStatuses: from}))
	if err != nil {
		return fmt.Errorf("suspend run: %w", err)
	}
	return nil
}

// RunResume moves a run back to queued under a new resume sequence and
// returns that sequence. Returns ErrNotFound when the run is not in from.
func RunResume(ctx context.Context, db DBTX, id string, from []string) (int, error) {
	seq, err := queries.RunResume(ctx, db, dbsqlc.RunResumeParams{ID: id, FromStatuses: from})
	if err != nil {
		return 0, fmt.Errorf("resume run: %w", interpret(err))
	}
	return seq, nil
}

// RunListParams filters and pages a run listing. Pages are keyset pages: pass
// the last row's CreatedAt and ID to get the next one.
type RunListParams struct {
	Status      string
	Workflow    string
	BusinessKey string // prefix match
	Limit       int
	AfterTime   *time.Time
	AfterID     string
}

// RunList returns runs newest first.
func RunList(ctx context.Context, db DBTX, p RunListParams) ([]*Run, error) {
	if p.Limit <= 0 || p.Limit > 500 {
		p.Limit = 50
	}
	rows, err := queries.RunList(ctx, db, dbsqlc.RunListParams{
		Status: p.Status, FinalStatuses: finalRunStatuses(), Workflow: p.Workflow, KeyPrefixPattern: likeEscape(p.BusinessKey),
		AfterTime: p.AfterTime, AfterID: afterID(p.AfterTime, p.AfterID), RowLimit: int32(p.Limit),
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", interpret(err))
	}
	return convertAll(rows, runFromInternal), nil
}

// RunRevisions returns the runs of workflow that run id revises, following
// each input's "revises" back (the approvals API's revisions), nearest
// first, at most maxDepth of them.
func RunRevisions(ctx context.Context, db DBTX, workflow, id string, maxDepth int) ([]*Run, error) {
	rows, err := queries.RunRevisions(ctx, db, dbsqlc.RunRevisionsParams{Workflow: workflow, ID: id, MaxDepth: maxDepth})
	if err != nil {
		return nil, fmt.Errorf("list revisions of run %s: %w", id, interpret(err))
	}
	return convertAll(rows, runFromInternal), nil
}

// VersionCount is how many runs of one workflow version have not ended.
type VersionCount struct {
	Workflow string
	Version  int
	Waiting  int // waiting for a human or another outside event
	Running  int // queued, running or retrying
}

// RunVersionCounts counts the runs of each workflow version that have not
// ended, by workflow and version.
func RunVersionCounts(ctx context.Context, db DBTX) ([]VersionCount, error) {
	rows, err := queries.RunVersionCounts(ctx, db, finalRunStatuses())
	if err != nil {
		return nil, fmt.Errorf("count runs by version: %w", interpret(err))
	}
	out := make([]VersionCount, len(rows))
	for i, r := range rows {
		out[i] = VersionCount{Workflow: r.Workflow, Version: r.Version, Waiting: r.Waiting, Running: r.Running}
	}
	return out, nil
}

// finalRunStatuses lists the statuses that end a run, as the queries take them.
func finalRunStatuses() []string {
	var final []string
	for _, s := range vocab.RunStatuses() {
		if s.Final() {
			final = append(final, string(s))
		}
	}
	return final
}

// deref returns what s points at, or "" for nil.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
