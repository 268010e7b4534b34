package workflow

import (
	"context"
	"fmt"
	"slices"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// transitions lists, for every status, the statuses a run may move to. It is
// the one place that says how a run's life goes.
//
// A run that failed, was rejected or was cancelled after effects with an
// undo goes back to queued to run its undos (compensate.go, which lists
// where from) and ends compensated or compensation_failed.
//
// A queued or retrying run may fail without running: the sweeper ends one whose
// job River discarded or that lost its worker too often (recover.go).
var transitions = map[vocab.RunStatus][]vocab.RunStatus{
	vocab.RunQueued: {vocab.RunRunning, vocab.RunFailed, vocab.RunCancelled},
	vocab.RunRunning: {vocab.RunCompleted, vocab.RunFailed, vocab.RunRetrying, vocab.RunWaitingHuman, vocab.RunCancelled,
		vocab.RunSleeping, vocab.RunWaitingEvent,
		vocab.RunCompensated, vocab.RunCompensationFailed},
	vocab.RunRetrying:     {vocab.RunRunning, vocab.RunFailed, vocab.RunCancelled},
	vocab.RunWaitingHuman: {vocab.RunQueued, vocab.RunRejected, vocab.RunCancelled},
	// A parked run's wake job claims it straight from its wait (timer.go,
	// event.go); an event's delivery and the sweeper queue it.
	vocab.RunSleeping:     {vocab.RunRunning, vocab.RunQueued, vocab.RunCancelled},
	vocab.RunWaitingEvent: {vocab.RunRunning, vocab.RunQueued, vocab.RunCancelled},
}

// CanTransition reports whether a run may move from one status to another.
func CanTransition(from, to vocab.RunStatus) bool {
	return slices.Contains(transitions[from], to)
}

// sources lists, for every status, the statuses a run may reach it from:
// the transitions table read the other way, for the store's conditional
// updates. It is computed once, off the hot path.
var sources = func() map[vocab.RunStatus][]string {
	m := map[vocab.RunStatus][]string{}
	for from, tos := range transitions {
		for _, to := range tos {
			m[to] = append(m[to], string(from))
		}
	}
	return m
}()

// sourcesOf lists the statuses from which a run may reach to, as the store's
// conditional updates take them.
func sourcesOf(to vocab.RunStatus) []string { return sources[to] }

// claimable are the statuses a run's job may start from: those that lead to
// running, and running itself, which is what a crashed worker leaves behind
// when River's rescuer hands its job to another.
var claimable = append(slices.Clone(sourcesOf(vocab.RunRunning)), string(vocab.RunRunning))

// transition moves a run to status, checked against the table above.
func transition(ctx context.Context, db store.DBTX, run *store.Run, to vocab.RunStatus) error {
	if !CanTransition(run.Status, to) {
		return fmt.Errorf("run %s cannot go from %s to %s", run.ID, run.Status, to)
	}
	if err := store.RunSetStatus(ctx, db, run.ID, sourcesOf(to), string(to)); err != nil {
		return fmt.Errorf("run %s to %s: %w", run.ID, to, err)
	}
	return nil
}
