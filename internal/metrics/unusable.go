package metrics

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Errors of FlagUnusable.
var (
	// ErrInvalidFlag: an unknown category or a missing or too long reason.
	ErrInvalidFlag = errors.New("invalid flag")
	// ErrNotCompleted: only a completed run's output can be flagged.
	ErrNotCompleted = errors.New("only a completed run can be flagged unusable")
	// ErrAlreadyFlagged: the run carries a flag already.
	ErrAlreadyFlagged = errors.New("the run is already flagged unusable")
)

// MaxReason is the longest reason a flag keeps, in characters.
const MaxReason = 2000

// Flag is a request to mark a completed run's output unusable. Actor is who
// flags it (an email, as audit events name people); the caller has checked
// that the actor may.
type Flag struct {
	RunID    string
	Category vocab.UnusableCategory
	Reason   string
	Actor    string
}

// Validate says what is wrong with f's category and reason (ErrInvalidFlag).
func (f Flag) Validate() error {
	if !f.Category.Valid() {
		return fmt.Errorf("%w: category must be one of %s", ErrInvalidFlag, vocab.Join(vocab.UnusableCategories(), ", "))
	}
	reason := strings.TrimSpace(f.Reason)
	if reason == "" {
		return fmt.Errorf("%w: say why the output is unusable (a reason is required)", ErrInvalidFlag)
	}
	if utf8.RuneCountInString(reason) > MaxReason {
		return fmt.Errorf("%w: the reason is over %d characters", ErrInvalidFlag, MaxReason)
	}
	return nil
}

// FlagUnusable records that a completed run's output is unusable and its
// audit event, in one transaction. Returns ErrInvalidFlag for a bad category
// or reason and store.ErrNotFound for an unknown run (both before anything is
// written), ErrNotCompleted for a run that did not complete, ErrAlreadyFlagged
// for a run flagged before.
func FlagUnusable(ctx context.Context, pool *pgxpool.Pool, f Flag) (*store.Unusable, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	f.Reason = strings.TrimSpace(f.Reason)
	return store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.Unusable, error) {
		run, err := store.RunGet(ctx, tx, f.RunID)
		if err != nil {
			return nil, err
		}
		if run.Status != vocab.RunCompleted {
			return nil, fmt.Errorf("%w: run %s is %s", ErrNotCompleted, run.ID, run.Status)
		}
		u, err := store.UnusableInsert(ctx, tx, store.Unusable{RunID: run.ID, Workflow: run.Workflow, Category: f.Category,
			Reason: f.Reason, FlaggedBy: f.Actor})
		if errors.Is(err, store.ErrConflict) {
			return nil, ErrAlreadyFlagged
		}
		if err != nil {
			return nil, err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: f.Actor, Subject: audit.RunSubject(run.ID), RunID: run.ID,
			Details: audit.RunFlaggedUnusable{Workflow: run.Workflow, Category: f.Category, Reason: f.Reason}}); err != nil {
			return nil, err
		}
		return u, nil
	})
}
