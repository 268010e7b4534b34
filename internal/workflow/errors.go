package workflow

import (
	"errors"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

var (
	// ErrSuspended unwinds a workflow function at a human gate. A workflow
	// returns it unchanged; the run waits, holding no job.
	ErrSuspended = errors.New("run suspended for human review")
	// ErrNonDeterministic means a replay met a different step than the run's
	// history recorded at that position.
	ErrNonDeterministic = errors.New("non-deterministic workflow")
	// ErrBudgetExceeded means a run hit its step, model-call or token budget.
	ErrBudgetExceeded = errors.New("budget exceeded")
	// ErrCancelled means the run was cancelled while it ran.
	ErrCancelled = errors.New("run cancelled")
	// ErrUnknownWorkflow is returned when starting a workflow nobody registered.
	ErrUnknownWorkflow = errors.New("unknown workflow")
	// ErrInvalidInput is returned for malformed run input or decision input.
	ErrInvalidInput = errors.New("invalid input")
	// ErrNotFound is returned for a run or request that does not exist. It
	// is store.ErrNotFound, so that "not found" is one error in every layer.
	ErrNotFound = store.ErrNotFound
	// ErrAlreadyDecided is matched by every *AlreadyDecidedError.
	ErrAlreadyDecided = errors.New("already decided")
	// ErrPayloadChanged means the action changed since the reviewer saw it.
	ErrPayloadChanged = errors.New("the proposed action changed since it was shown; reload and review it again")
	// ErrForbidden means the actor may not make this decision.
	ErrForbidden = errors.New("not allowed")
	// ErrEditNeedsReview means an edited action falls under a rule that the
	// editor may not decide alone; the message names the rule.
	ErrEditNeedsReview = errors.New("the edited action needs review under another rule")
	// ErrFinal means the run has already ended.
	ErrFinal = errors.New("run has already ended")
)

// AlreadyDecidedError says who won the race to decide a request.
type AlreadyDecidedError struct {
	Status vocab.RequestStatus
	By     string
	At     time.Time
}

func (e *AlreadyDecidedError) Error() string {
	return fmt.Sprintf("already decided (%s) by %s at %s", e.Status, e.By, e.At.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrAlreadyDecided) hold.
func (e *AlreadyDecidedError) Is(target error) bool { return target == ErrAlreadyDecided }

// Failure ends a run at once with a code and message; River does not retry it.
type Failure struct {
	Code    string
	Message string
	Err     error
}

func (f *Failure) Error() string {
	return f.Code + ": " + f.Message
}

func (f *Failure) Unwrap() error { return f.Err }

// Permanent wraps err so that the run fails at once instead of being retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &Failure{Code: "permanent_error", Message: err.Error(), Err: err}
}

// Fail ends the run with the given code and message.
func Fail(code, message string) error {
	return &Failure{Code: code, Message: message}
}

// failureOf classifies an error that ended a workflow function: a *Failure for
// errors that must not be retried, nil for those River should retry.
func failureOf(err error) *Failure {
	var f *Failure
	switch {
	case errors.As(err, &f):
		return f
	case errors.Is(err, ErrNonDeterministic):
		return &Failure{Code: "non_deterministic", Message: err.Error(), Err: err}
	case errors.Is(err, ErrBudgetExceeded):
		return &Failure{Code: "budget_exceeded", Message: err.Error(), Err: err}
	}
	return nil
}
