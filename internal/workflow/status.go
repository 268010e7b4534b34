package workflow

import (
	"context"
	"fmt"
	"slices"

	"github.com/countersign/countersign/internal/store"
)

// transitions lists, for every status, the statuses a run may move to. It is
// the one place that says how a run's life goes.
//
// A queued or retrying run may fail without running: the sweeper ends one whose
// job River discarded or that lost its worker too often (recover.go).
var transitions = map[string][]string{
	store.RunQueued:       {store.RunRunning, store.RunFailed, store.RunCancelled},
	store.RunRunning:      {store.RunCompleted, store.RunFailed, store.RunRetrying, store.RunWaitingHuman, store.RunCancelled},
	store.RunRetrying:     {store.RunRunning, store.RunFailed, store.RunCancelled},
	store.RunWaitingHuman: {store.RunQueued, store.RunRejected, store.RunCancelled},
}

// Statuses lists every run status, in the order a run usually meets them.
var Statuses = []string{store.RunQueued, store.RunRunning, store.RunWaitingHuman, store.RunRetrying,
	store.RunCompleted, store.RunFailed, store.RunRejected, store.RunCancelled}

// CanTransition reports whether a run may move from one status to another.
func CanTransition(from, to string) bool {
	return slices.Contains(transitions[from], to)
}

// IsFinal reports whether a status ends a run.
func IsFinal(status string) bool {
	_, hasNext := transitions[status]
	return !hasNext
}

// sources lists, for every status, the statuses a run may reach it from:
// the transitions table read the other way, for the store's conditional
// updates. It is computed once, off the hot path.
var sources = func() map[string][]string {
	m := map[string][]string{}
	for from, tos := range transitions {
		for _, to := range tos {
			m[to] = append(m[to], from)
		}
	}
	return m
}()

// sourcesOf lists the statuses from which a run may reach to.
func sourcesOf(to string) []string { return sources[to] }

// claimable are the statuses a run's job may start from: those that lead to
// running, and running itself, which is what a crashed worker leaves behind
// when River's rescuer hands its job to another.
var claimable = append(slices.Clone(sourcesOf(store.RunRunning)), store.RunRunning)

// transition moves a run to status, checked against the table above.
func transition(ctx context.Context, db store.DBTX, run *store.Run, to string) error {
	if !CanTransition(run.Status, to) {
		return fmt.Errorf("run %s cannot go from %s to %s", run.ID, run.Status, to)
	}
	if err := store.RunSetStatus(ctx, db, run.ID, sourcesOf(to), to); err != nil {
		return fmt.Errorf("run %s to %s: %w", run.ID, to, err)
	}
	return nil
}
