package workflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Why a run compensates, as stored in workflow_runs.compensation_cause.
const (
	CauseFailed    = "failed"
	CauseRejected  = "rejected"
	CauseCancelled = "cancelled"
)

// undoFunc is a registered undo with its result type erased: it decodes
// the effect's recorded result itself.
type undoFunc func(ctx context.Context, ec EffectContext, result json.RawMessage) error

// Compensate registers undo as the compensation of the effect named effect
// in workflow's runs. When a run fails for good, is rejected at a later gate
// or is cancelled, the undos of the effects it already applied run in
// reverse order, each once, with the effect's recorded result and a key of
// its own (the effect's key and ":undo"); writes through ec.Tx commit with
// the undo's record. An undo is code, so it is registered with the workflow,
// not passed to Effect: a run resumed by another process after a crash
// finds it by the effect's name. A name used twice in a run undoes each use.
//
// The workflow must be registered first; a second undo for one effect
// panics, as a second registration does.
func Compensate[T any](r *Registry, workflow, effect string, undo func(ctx context.Context, ec EffectContext, result T) error) {
	def, ok := r.defs[workflow]
	if !ok {
		panic(fmt.Sprintf("Compensate: workflow %q is not registered", workflow))
	}
	if def.undos == nil {
		def.undos = map[string]undoFunc{}
	}
	if _, dup := def.undos[effect]; dup {
		panic(fmt.Sprintf("Compensate: effect %q of workflow %q has an undo already", effect, workflow))
	}
	def.undos[effect] = func(ctx context.Context, ec EffectContext, raw json.RawMessage) error {
		var result T
		if err := json.Unmarshal(raw, &result); err != nil {
			return fmt.Errorf("recorded result does not decode into %T: %w", result, err)
		}
		return undo(ctx, ec, result)
	}
}

// pendingUndo is one applied effect to undo, and the record of its undo so far.
type pendingUndo struct {
	effect *store.Step
	name   string // "undo:" and the effect's name, with #n for its n-th use
	key    string // the effect's idempotency key and ":undo"
	seq    int    // the undo's position in the run's history
	prior  *store.Step
	fn     undoFunc
}

// undoPlan lists the effects of steps that have an undo, newest first, with
// the positions their undos take after the run's last step: the same on every
// execution, so that a compensation resumed after a crash finds what it did.
func undoPlan(def *Definition, runID string, steps []*store.Step) []pendingUndo {
	if def == nil || len(def.undos) == 0 {
		return nil
	}
	seen := map[string]int{}
	base := 0
	var plan []pendingUndo
	done := map[string]*store.Step{}
	for _, s := range steps {
		if s.Kind == vocab.StepKindCompensation {
			done[s.Name] = s
			continue
		}
		base = s.Seq + 1
		seen[s.Name]++
		fn, ok := def.undos[s.Name]
		if s.Kind != vocab.StepKindEffect || s.Status != vocab.StepCompleted || !ok {
			continue
		}
		suffix := s.Name
		if n := seen[s.Name]; n > 1 {
			suffix = fmt.Sprintf("%s#%d", s.Name, n)
		}
		plan = append(plan, pendingUndo{effect: s, name: "undo:" + suffix, key: runID + ":" + suffix + ":undo", fn: fn})
	}
	for i, j := 0, len(plan)-1; i < j; i, j = i+1, j-1 {
		plan[i], plan[j] = plan[j], plan[i]
	}
	for i := range plan {
		plan[i].seq = base + i
		plan[i].prior = done[plan[i].name]
	}
	return plan
}

// Where a run may start compensating from, by cause: a failing execution
// holds a running run, a rejection finds it waiting, a cancellation anywhere
// before its end. It leaves them through queued, under a new resume sequence,
// which the transitions table does not list: a resume must not reach queued
// from these.
var (
	compensateOnFailure = []string{string(vocab.RunRunning)}
	compensateOnReject  = []string{string(vocab.RunWaitingHuman)}
	compensateOnCancel  = []string{string(vocab.RunQueued), string(vocab.RunRunning), string(vocab.RunRetrying),
		string(vocab.RunWaitingHuman)}
)

// startCompensation turns run to undoing its applied effects, in tx, when it
// has any: the run is queued with its cause under a new resume sequence, its
// job is enqueued in tx, and the start is audited with the cause. owner, when
// set, must still hold the run; code and message replace its error. It
// reports false, having changed nothing, when there is nothing to undo.
func (e *Engine) startCompensation(ctx context.Context, tx pgx.Tx, run *store.Run, from []string, cause, owner, code, message string) (bool, error) {
	def, ok := e.registry.Get(run.Workflow)
	if !ok || len(def.undos) == 0 {
		return false, nil
	}
	steps, err := store.StepList(ctx, tx, run.ID)
	if err != nil {
		return false, err
	}
	plan := undoPlan(def, run.ID, steps)
	if len(plan) == 0 {
		return false, nil
	}
	seq, err := store.RunCompensateStart(ctx, tx, run.ID, owner, from, cause, code, message)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if err := e.scheduler.EnqueueRun(ctx, tx, run.ID, seq); err != nil {
		return false, err
	}
	if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(run.ID), RunID: run.ID,
		Details: audit.RunCompensating{Cause: cause, Undos: len(plan)}}); err != nil {
		return false, err
	}
	return true, notifyRun(ctx, tx, run.ID, vocab.RunQueued)
}

// compensateFailure starts compensating a run whose execution failed for
// good, in place of recording it failed: the failure is audited and the
// job completes in the same transaction. It reports false when the run has
// nothing to undo, or the execution no longer holds it.
func (e *Engine) compensateFailure(ctx context.Context, x *execution, complete CompleteFunc, f *Failure) (bool, error) {
	if x.def == nil || len(x.def.undos) == 0 {
		return false, nil
	}
	var started bool
	err := store.WithTx(context.WithoutCancel(ctx), e.pool, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		started, err = e.startCompensation(ctx, tx, x.run, compensateOnFailure, CauseFailed, x.owner, f.Code, f.Message)
		if err != nil || !started {
			return err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(x.run.ID), RunID: x.run.ID,
			Details: audit.RunFailed{Code: f.Code, Message: f.Message, Final: true,
				Attempt: &audit.Attempt{Attempt: x.run.Attempt, Step: x.failedStep()}}}); err != nil {
			return err
		}
		return complete(ctx, tx)
	})
	return started, err
}

// compensate runs the undos of a compensating run, newest effect first,
// skipping those its history shows done. Each undo commits with its record
// (a compensation step) and its key in the effects ledger, so it happens
// once; no row lock is held while it runs, only the execution's lease. A
// failed undo is retried as the workflow's retry policy says; when that
// gives up the run ends compensation_failed for a human, otherwise
// compensated.
func (e *Engine) compensate(ctx context.Context, x *execution, complete CompleteFunc, job Job) error {
	steps, err := store.StepList(ctx, e.pool, x.run.ID)
	if err != nil {
		return e.release(ctx, x, err)
	}
	cause := *x.run.CompensationCause
	plan := undoPlan(x.def, x.run.ID, steps)
	for _, u := range plan {
		if u.prior != nil && u.prior.Status == vocab.StepCompleted {
			continue
		}
		s := &slot{seq: u.seq, name: u.name, kind: vocab.StepKindCompensation, key: u.key, prior: u.prior,
			attempts: 1, started: e.now()}
		if u.prior != nil {
			s.attempts = u.prior.Attempts + 1
		}
		err := e.undo(ctx, x, s, u)
		if errors.Is(err, ErrCancelled) || errors.Is(context.Cause(ctx), errLeaseLost) {
			return nil // handed on: the new execution carries on
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
			return e.release(ctx, x, ctx.Err()) // shutting down
		}
		err = fmt.Errorf("undo of %q: %w", u.effect.Name, err)
		x.recordFailure(ctx, s, err, 0, 0)
		if plan := x.planRetry(err); !plan.final {
			if scheduled, serr := e.retryLater(ctx, x, complete, err, plan); scheduled {
				return serr
			}
			if job.Attempt < job.MaxAttempts {
				return e.release(ctx, x, err) // River retries the job
			}
		}
		return e.endCompensation(ctx, x, complete, vocab.RunCompensationFailed, err.Error(),
			audit.RunCompensationFailed{Cause: cause, Step: u.name, Message: err.Error(), Undone: countDone(plan, u.seq)})
	}
	return e.endCompensation(ctx, x, complete, vocab.RunCompensated, "", audit.RunCompensated{Cause: cause, Undone: len(plan)})
}

// countDone counts the undos of plan before position seq: those that ran.
func countDone(plan []pendingUndo, seq int) int {
	n := 0
	for _, u := range plan {
		if u.seq < seq {
			n++
		}
	}
	return n
}

// undo runs one undo in a transaction with its ledger entry and its record.
func (e *Engine) undo(ctx context.Context, x *execution, s *slot, u pendingUndo) error {
	sctx, cancel := context.WithTimeout(ctx, x.def.Options.StepTimeout)
	defer cancel()
	// The ledger entry and the record commit together: a key already in the
	// ledger (store.ErrEffectRecorded) means another execution of this run
	// got here first.
	return store.WithEffectTx(sctx, e.pool, u.key, x.run.ID, u.name, func(ctx context.Context, tx pgx.Tx) error {
		// The undo sees its run as the effect did (RunID works in it).
		if err := u.fn(withExecution(ctx, x), EffectContext{Key: u.key, Tx: tx}, u.effect.Output); err != nil {
			return err
		}
		err := store.StepCompensate(ctx, tx, store.StepRecord{RunID: x.run.ID, Seq: s.seq, Name: s.name,
			Attempts: s.attempts, StartedAt: s.started, Owner: x.owner})
		if errors.Is(err, store.ErrNotFound) {
			return ErrCancelled
		}
		return err
	})
}

// endCompensation ends a compensating run with status, audits how, and
// completes the job, in one transaction.
func (e *Engine) endCompensation(ctx context.Context, x *execution, complete CompleteFunc, status vocab.RunStatus, message string, details audit.Details) error {
	ctx = context.WithoutCancel(ctx)
	err := store.WithTx(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := store.RunCompensateEnd(ctx, tx, x.run.ID, x.owner, string(status), message); errors.Is(err, store.ErrNotFound) {
			return complete(ctx, tx) // handed on meanwhile
		} else if err != nil {
			return err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(x.run.ID), RunID: x.run.ID,
			Details: details}); err != nil {
			return err
		}
		if err := complete(ctx, tx); err != nil {
			return err
		}
		return notifyRun(ctx, tx, x.run.ID, status)
	})
	if err == nil {
		e.logger.Info("run compensation ended", "run", x.run.ID, "status", status)
	}
	return err
}

// compensateRejected starts compensating a run rejected at a gate, in the
// decision's transaction (approval.Runs.Reject).
func (e *Engine) compensateRejected(ctx context.Context, tx pgx.Tx, runID string) (bool, error) {
	run, err := store.RunGet(ctx, tx, runID)
	if err != nil {
		return false, err
	}
	return e.startCompensation(ctx, tx, run, compensateOnReject, CauseRejected, "", "rejected", "the action was rejected")
}
