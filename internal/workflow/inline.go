package workflow

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
)

// Inline is a run started claimed by the caller (StartInline), to execute
// in the caller's goroutine with Execute.
type Inline struct {
	engine *Engine
	run    *store.Run
	owner  string
}

// StartInline starts a run as Start does, for a caller that executes it at
// once in its own goroutine (the approvals API, whose agent waits for the
// first answer): the run is born claimed, running under this execution's
// lease, by the statement that inserts it with its run.started event (its
// notification follows the commit). No River job is inserted: no worker races the inline
// execution for the claim, and River does no work for a run that ends or
// parks inline. If the process dies before that, or the execution is never
// started, the lease lapses and the sweeper (Recover) hands the run to a new
// job, as it does any lost execution's run.
//
// The start is one statement and one implicit transaction, which commits
// without waiting for its WAL flush (store.RunInsertClaimed):
// the inline execution's first commit (the first step's, the parking for a
// human, a failure's), which waits for it, flushes the start's WAL with its
// own, and the caller answers only after that. A crash of the database
// server in between loses a run no one was told of; the agent's retry with
// the same idempotency key starts it again. What is saved is a WAL flush
// on the agent's path, the costliest part of a commit on a busy server.
//
// It returns the Inline to execute when the run was created, nil with the
// existing run when the business key names one (created false). Validation
// and errors are Start's.
func (e *Engine) StartInline(ctx context.Context, p StartParams) (run *store.Run, created bool, in *Inline, err error) {
	def, p, err := e.checkStart(p)
	if err != nil {
		return nil, false, nil, err
	}
	owner := uuid.NewString()
	ctx, span, traceParent := e.traceStart(ctx, p) // trace.go
	defer func() { traceStarted(span, run, created, err) }()
	// Inserted already claimed (resume sequence 0, as its first job would
	// claim it) with its run.started event, in one statement on the pool:
	// one round trip and one commit, made durable by the execution's first
	// commit, which waits for the flush of all WAL before its own (see
	// StartInline).
	version := max(def.Version(), 1) // as the store records it
	run, created, err = store.RunInsertClaimed(ctx, e.pool, store.RunInsertParams{
		Workflow: p.Workflow, Version: version, BusinessKey: p.BusinessKey, Input: p.Input, StartedBy: p.StartedBy,
		TraceParent: traceParent,
	}, owner, e.lease, store.StartEvent{Kind: string(audit.KindRunStarted), SubjectType: audit.RunSubject("").Type,
		Details: audit.RunStarted{Workflow: p.Workflow, BusinessKey: p.BusinessKey, Version: version}})
	if err != nil {
		return nil, false, nil, err
	}
	if !created {
		return run, false, nil, nil
	}
	// Signalled after the commit, not in it (as a run's completion is): a
	// notifying transaction waits for PostgreSQL's one notification-queue
	// lock, which every other notifying commit of the cluster holds through
	// its WAL flush, and this one is on the agent's path. A lost signal
	// only delays a runs list's badge.
	if err := e.signals.Send(notify.Message{Type: notify.KindRun, ID: run.ID, Status: string(run.Status)}); err != nil {
		e.logger.Warn("notify run started", "run", run.ID, "err", err)
	}
	return run, true, &Inline{engine: e, run: run, owner: owner}, nil
}

// Execute runs the inline run's workflow function until it ends or parks,
// as Execute does for a job that claimed the run, renewing the lease
// meanwhile. A failed attempt is recorded as a job's would be: a retry the
// policy schedules gets its job; any other is left, lease lapsed, to the
// sweeper. It returns an error only when the run is left for a retry.
func (in *Inline) Execute(ctx context.Context) error {
	e, run, owner := in.engine, in.run, in.owner
	// No attempt limit for an inline execution: the run's own retry policy
	// decides when it fails for good.
	job := Job{RunID: run.ID, Seq: 0, Attempt: 1, MaxAttempts: math.MaxInt}
	complete := func(context.Context, pgx.Tx) error { return nil } // no River job to complete
	// A run born claimed has no history: nothing to read before its first step.
	return e.executeClaimed(ctx, run, nil, owner, job, complete)
}

// ExecuteNext executes the next ready run of h's queue and kind: the one
// the previous execution claimed with its completion (Handoff), or else
// the run of the oldest available job of the kind in the queue that no
// worker has fetched yet, claimed as the job is deleted
// (store.RunClaimNext). It executes as its job would have, until it ends
// or parks, and may claim the run after it in turn. A worker that has
// finished its own run calls it before returning, so that while runs are
// queued one River job carries several of them and River does not fetch,
// mark and complete a job for each. The claimed run has no job, as a run
// started inline has none: should this execution be lost, its lease lapses
// and the sweeper hands the run to a new job. A failed attempt is recorded
// as Inline.Execute records it (the run's retry policy decides).
//
// It returns false when no job was ready (or its run could not be claimed),
// and an error only when the executed run is left for a retry.
func (e *Engine) ExecuteNext(ctx context.Context, h *Handoff) (bool, error) {
	run, history, owner := h.run, h.history, h.owner
	h.run, h.history, h.owner = nil, nil, ""
	if run == nil {
		owner = uuid.NewString()
		var err error
		run, history, err = store.RunClaimNext(ctx, e.pool, h.Queue, h.Kind, claimable, owner, e.lease)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
	job := Job{RunID: run.ID, Seq: run.ResumeSeq, Attempt: 1, MaxAttempts: math.MaxInt, Jobless: true, Next: h}
	complete := func(context.Context, pgx.Tx) error { return nil } // its job is gone already
	return true, e.executeClaimed(ctx, run, history, owner, job, complete)
}

// ReleaseHandoff gives back a run that h claimed and no execution took
// (the job stopped going on: its time was up, or the worker is stopping):
// the claim is released and a job queued for the run, in one transaction,
// so that it executes at once rather than after its lease, as a recovery.
func (e *Engine) ReleaseHandoff(ctx context.Context, h *Handoff) error {
	if !h.Pending() {
		return nil
	}
	run, owner := h.run, h.owner
	h.run, h.history, h.owner = nil, nil, ""
	err := store.WithTx(context.WithoutCancel(ctx), e.pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := store.RunLeaseRelease(ctx, tx, run.ID, owner); err != nil {
			return err
		}
		return e.scheduler.EnqueueRun(ctx, tx, run.ID, run.ResumeSeq)
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("release run %s: %w", run.ID, err)
	}
	return nil
}
