package workflow

import (
	"errors"

	"github.com/countersign/countersign/internal/approval"
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
	// ErrInvalidInput is returned for malformed run input or decision
	// input: the same error as approval's, so either name matches.
	ErrInvalidInput = approval.ErrInvalidInput
	// ErrNotFound is returned for a run or request that does not exist
	// (approval.ErrNotFound).
	ErrNotFound = approval.ErrNotFound
	// ErrAlreadyDecided is approval.ErrAlreadyDecided.
	ErrAlreadyDecided = approval.ErrAlreadyDecided
	// ErrPayloadChanged is approval.ErrPayloadChanged.
	ErrPayloadChanged = approval.ErrPayloadChanged
	// ErrForbidden is approval.ErrForbidden.
	ErrForbidden = approval.ErrForbidden
	// ErrEditNeedsReview is approval.ErrEditNeedsReview.
	ErrEditNeedsReview = approval.ErrEditNeedsReview
	// ErrNotInBatch is approval.ErrNotInBatch.
	ErrNotInBatch = approval.ErrNotInBatch
	// ErrFinal means the run has already ended.
	ErrFinal = errors.New("run has already ended")
)

// AlreadyDecidedError says who won the race to decide a request.
type AlreadyDecidedError = approval.AlreadyDecidedError

// Failure ends a run at once with a code and message; it is not retried.
// One made by Error is retried as the step's RetryPolicy says.
type Failure struct {
	Code    string
	Message string
	Err     error
	// retryable: made by Error, so the retry policy decides.
	retryable bool
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
		if f.retryable {
			return nil
		}
		return f
	case errors.Is(err, ErrNonDeterministic):
		return &Failure{Code: "non_deterministic", Message: err.Error(), Err: err}
	case errors.Is(err, ErrBudgetExceeded):
		return &Failure{Code: "budget_exceeded", Message: err.Error(), Err: err}
	}
	return nil
}
