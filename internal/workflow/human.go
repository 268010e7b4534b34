package workflow

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/approval"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// The human side of the engine lives in internal/approval. Workflow authors
// propose actions and read decisions through the names below, and the
// console calls the engine's methods, so that neither needs a second import.

// Action is what a run proposes to do (approval.Action).
type Action = approval.Action

// Check is one automated check of a proposed action (approval.Check).
type Check = approval.Check

// Decision is what RequestApproval returns (approval.Decision).
type Decision = approval.Decision

// What a reviewer can do with a batch.
const (
	ApproveSelected   = approval.ApproveSelected
	ApproveRejectRest = approval.ApproveRejectRest
	RejectAll         = approval.RejectAll
)

// Decision and batch parameters and results (see internal/approval).
type (
	Actor             = approval.Actor
	DecideParams      = approval.DecideParams
	DecideResult      = approval.DecideResult
	Change            = approval.Change
	ItemRef           = approval.ItemRef
	BatchDecideParams = approval.BatchDecideParams
	ItemOutcome       = approval.ItemOutcome
	BatchResult       = approval.BatchResult
	RunRef            = approval.RunRef
	Scheduler         = approval.Scheduler
)

// PayloadHash is the hash that binds a decision to the action the reviewer saw.
func PayloadHash(raw []byte) string { return approval.PayloadHash(raw) }

// AllowedRoles lists who may decide a request (approval.AllowedRoles).
func AllowedRoles(req *store.Request) []vocab.Role { return approval.AllowedRoles(req) }

// CanDecide reports whether roles allow deciding req at all (approval.CanDecide).
func CanDecide(req *store.Request, roles []vocab.Role) bool { return approval.CanDecide(req, roles) }

// EditDiff validates edited parameters and lists what changed (approval.EditDiff).
func EditDiff(proposed, edited map[string]any) ([]Change, error) {
	return approval.EditDiff(proposed, edited)
}

// Decide records one verdict and resumes or ends the run (approval.Service.Decide).
func (e *Engine) Decide(ctx context.Context, p DecideParams) (*DecideResult, error) {
	res, err := e.approvals.Decide(ctx, p)
	if err == nil && res.Decision != nil {
		e.traceDecided(ctx, res.Request.ID, res.Decision.Verdict) // trace.go
		// Committed: this process's waiters (the approval's long poll) hear
		// of it now; the transaction's own notification, which the other
		// processes get, is delivered here once only.
		req := res.Request
		e.signals.Local(notify.Message{Type: notify.KindDecision, ID: req.ID, RunID: req.RunID, Status: string(req.Status)})
	}
	return res, err
}

// DecideBatch decides the shown items of a batch (approval.Service.DecideBatch).
func (e *Engine) DecideBatch(ctx context.Context, p BatchDecideParams) (*BatchResult, error) {
	res, err := e.approvals.DecideBatch(ctx, p)
	if err == nil && e.tracing {
		for _, it := range res.Items {
			if v, ok := batchVerdicts[it.Outcome]; ok {
				e.traceDecided(ctx, it.RequestID, v) // trace.go
			}
		}
	}
	return res, err
}

// batchVerdicts are the verdicts of a batch's decided items, by outcome.
var batchVerdicts = map[string]vocab.Verdict{string(vocab.RequestApproved): vocab.VerdictApprove, string(vocab.RequestRejected): vocab.VerdictReject}

// Expire applies a request's on_timeout (approval.Service.Expire).
func (e *Engine) Expire(ctx context.Context, requestID string) (retryAt *time.Time, err error) {
	retryAt, err = e.approvals.Expire(ctx, requestID)
	if err == nil && retryAt == nil {
		e.traceDecided(ctx, requestID, "") // trace.go: approved or rejected by its on_timeout, if it was
	}
	return retryAt, err
}

// CloseBatch closes a batch at its max_wait (approval.Service.CloseBatch).
func (e *Engine) CloseBatch(ctx context.Context, batchID string) (wait time.Duration, err error) {
	return e.approvals.CloseBatch(ctx, batchID)
}

// runMoves moves waiting runs on for the approval service, as the
// transitions table allows: conditional updates from the statuses that may
// reach the target, so a run that is not waiting refuses both. It reads the
// registry for how a workflow takes a rejection.
type runMoves struct{ engine *Engine }

// Reject implements approval.Runs: a run of a workflow with
// Options.HandlesRejection resumes to read its rejection; a run that applied
// effects with an undo undoes them (its compensation job enqueued in the
// decision's transaction) and ends compensated; any other ends rejected.
func (m runMoves) Reject(ctx context.Context, tx pgx.Tx, runID, workflow string) (int, bool, error) {
	if def, ok := m.definition(ctx, tx, runID, workflow); ok && def.Options.HandlesRejection {
		seq, err := m.Resume(ctx, tx, runID)
		return seq, err == nil, err
	}
	if started, err := m.engine.compensateRejected(ctx, tx, runID); started || err != nil {
		return 0, false, err
	}
	return 0, false, store.RunSetStatus(ctx, tx, runID, sourcesOf(vocab.RunRejected), string(vocab.RunRejected))
}

// Resume implements approval.Runs.
func (m runMoves) Resume(ctx context.Context, tx pgx.Tx, runID string) (int, error) {
	return store.RunResume(ctx, tx, runID, sourcesOf(vocab.RunQueued))
}
