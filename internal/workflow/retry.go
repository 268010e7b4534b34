package workflow

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// RetryPolicy says how often a failing step is tried and how long the run
// waits between attempts. While it waits the run holds no worker: the
// failure is recorded and the run's next job is scheduled at the backoff
// time. Zero fields take the defaults below.
type RetryPolicy struct {
	// MaxAttempts counts every attempt, the first included: 1 never
	// retries. Default 5.
	MaxAttempts int
	// InitialInterval is the wait after the first failed attempt. Default 1 s.
	InitialInterval time.Duration
	// BackoffFactor multiplies the wait after each further failure. Default 2.
	BackoffFactor float64
	// MaxInterval caps the wait. Default 1 minute.
	MaxInterval time.Duration
	// NonRetryable lists error codes that fail the run at the first error:
	// a step's Error(code, ...) codes, and the engine's own "step_error"
	// (an error without a code) and "timeout" (the step's timeout). A
	// Fail or Permanent error always fails at once, listed or not.
	NonRetryable []string
}

// Retry defaults: five attempts, waiting 1, 2, 4 and 8 s between them.
const (
	DefaultMaxAttempts     = 5
	DefaultInitialInterval = time.Second
	DefaultBackoffFactor   = 2.0
	DefaultMaxInterval     = time.Minute
)

// Error codes the engine gives errors that carry none.
const (
	CodeStepError         = "step_error"
	CodeTimeout           = "timeout"
	CodeAttemptsExhausted = "attempts_exhausted"
)

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.InitialInterval <= 0 {
		p.InitialInterval = DefaultInitialInterval
	}
	if p.BackoffFactor < 1 {
		p.BackoffFactor = DefaultBackoffFactor
	}
	if p.MaxInterval <= 0 {
		p.MaxInterval = DefaultMaxInterval
	}
	p.MaxInterval = max(p.MaxInterval, p.InitialInterval)
	return p
}

// Backoff is how long the run waits after the attempt-th failed attempt
// (1 for the first) before the next: InitialInterval × BackoffFactor^(attempt-1),
// at most MaxInterval.
func (p RetryPolicy) Backoff(attempt int) time.Duration {
	p = p.withDefaults()
	d := float64(p.InitialInterval) * math.Pow(p.BackoffFactor, float64(max(attempt, 1)-1))
	if d >= float64(p.MaxInterval) || math.IsInf(d, 0) || math.IsNaN(d) {
		return p.MaxInterval
	}
	return time.Duration(d)
}

// StepOption changes how one Step, Effect or Generate call behaves.
type StepOption func(*stepOptions)

type stepOptions struct {
	retry *RetryPolicy
}

// WithRetry gives one step its own retry policy instead of the workflow's
// (Options.Retry).
func WithRetry(p RetryPolicy) StepOption {
	return func(o *stepOptions) { o.retry = &p }
}

// Error is a step error with a code that the step's retry policy may retry:
// unless its RetryPolicy lists the code in NonRetryable, the step is tried
// again after the backoff. Use Fail for an error that must never be retried.
func Error(code, message string) error {
	return &Failure{Code: code, Message: message, retryable: true}
}

// ErrorCode is the code an error is recorded with: a Fail or Error code,
// "timeout" for a step that ran out of time, "step_error" for any other.
func ErrorCode(err error) string {
	var f *Failure
	switch {
	case errors.As(err, &f):
		return f.Code
	case errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout
	}
	if f := failureOf(err); f != nil {
		return f.Code
	}
	return CodeStepError
}

// applyStepOptions records a step's options on its slot.
func (x *execution) applyStepOptions(s *slot, opts []StepOption) {
	if len(opts) == 0 {
		return
	}
	var o stepOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	s.retry = o.retry
}

// policyFor is the retry policy that governs slot s: its own, or the
// workflow's default.
func (x *execution) policyFor(s *slot) RetryPolicy {
	if s != nil && s.retry != nil {
		return s.retry.withDefaults()
	}
	if x.def != nil {
		return x.def.Options.Retry.withDefaults()
	}
	return RetryPolicy{}.withDefaults()
}

// recordAttempt keeps a failed attempt of a step with its error, beside the
// step row that holds only the latest, and remembers the step as the one that
// failed, whose policy governs the retry.
func (x *execution) recordAttempt(ctx context.Context, s *slot, stepErr error) {
	x.failed = s
	err := store.StepAttemptInsert(context.WithoutCancel(ctx), x.engine.pool, store.StepAttempt{
		RunID: x.run.ID, Seq: s.seq, Attempt: s.attempts, Name: s.name, Error: stepErr.Error(), StartedAt: s.started})
	if err != nil {
		x.engine.logger.Error("record step attempt", "run", x.run.ID, "step", s.name, "err", err)
	}
}

// retryPlan is what a retryable failure leads to.
type retryPlan struct {
	final   bool
	code    string
	attempt int
	at      time.Time
}

// planRetry decides, by the failed step's policy (or the workflow's default
// when the error came from outside a step), whether the run tries again and
// when. Attempts are the step's (or, outside a step, the run's failures), so
// a crash spends none.
func (x *execution) planRetry(runErr error) retryPlan {
	s := x.failed
	p := x.policyFor(s)
	attempt := x.run.Failures + 1
	if s != nil {
		attempt = s.attempts
	}
	plan := retryPlan{code: ErrorCode(runErr), attempt: attempt}
	switch {
	case slices.Contains(p.NonRetryable, plan.code):
		plan.final = true
	case attempt >= p.MaxAttempts:
		plan.final, plan.code = true, CodeAttemptsExhausted
	default:
		plan.at = x.engine.now().Add(p.Backoff(attempt))
	}
	return plan
}

// retryLater records a failed attempt whose step will be tried again at
// plan.at: in one transaction the run becomes retrying under a new resume
// sequence, the job for it is scheduled at that time, and this job
// completes. No worker waits for the backoff. It reports whether it
// recorded the retry (always, since the scheduler schedules runs).
func (e *Engine) retryLater(ctx context.Context, x *execution, complete CompleteFunc, runErr error, plan retryPlan) (bool, error) {
	run := x.run
	msg := runErr.Error()
	err := store.WithTx(context.WithoutCancel(ctx), e.pool, func(ctx context.Context, tx pgx.Tx) error {
		seq, err := store.RunRetryLater(ctx, tx, run.ID, x.owner, sourcesOf(vocab.RunRetrying), plan.code, msg, plan.at, e.lease)
		if errors.Is(err, store.ErrNotFound) {
			return complete(ctx, tx) // cancelled or handed on meanwhile: its new state decides
		} else if err != nil {
			return err
		}
		if s := x.failed; s != nil {
			if err := store.StepAttemptSetRetry(ctx, tx, run.ID, s.seq, s.attempts, plan.at); err != nil {
				return err
			}
		}
		if err := e.scheduler.ScheduleRun(ctx, tx, run.ID, seq, plan.at); err != nil {
			return fmt.Errorf("schedule retry: %w", err)
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(run.ID), RunID: run.ID,
			Details: audit.RunFailed{Code: plan.code, Message: msg,
				Attempt: &audit.Attempt{Attempt: plan.attempt, Step: x.failedStep()}}}); err != nil {
			return err
		}
		if err := complete(ctx, tx); err != nil {
			return err
		}
		return notifyRun(ctx, tx, run.ID, vocab.RunRetrying)
	})
	return true, err
}

// failedStep names the step whose failure ends this execution, or the step
// the run had reached when the error came from outside a step.
func (x *execution) failedStep() string {
	if x.failed != nil {
		return x.failed.name
	}
	return x.run.CurrentStep
}
