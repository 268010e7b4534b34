package countersign

import (
	"context"
	"time"

	"github.com/countersign/countersign/internal/workflow"
)

// Registry holds a program's workflows by name; pass it to [Main]. The zero
// value is not usable: make one with [NewRegistry].
type Registry struct {
	r *workflow.Registry
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{r: workflow.NewRegistry()} }

// Options are a workflow's budgets and limits; zero fields take the defaults
// (50 steps, 10 model calls, 50,000 tokens, 2 minutes a step attempt). A run
// that exceeds a budget fails with code budget_exceeded. Example is a sample
// input that `run start --help` shows. Version (default 1) numbers the code:
// a name may be registered in several versions, new runs start on the newest
// and each run executes the version it started with, so that runs waiting
// for a reviewer survive a deploy that changed the workflow; a run whose
// version the worker lacks fails with code unknown_version. `countersign
// workflow list` shows which versions still have runs.
type Options = workflow.Options

// Register adds the workflow fn under name. A run's JSON input is decoded
// into In, unknown fields refused (a run with bad input is refused when it is
// started, and nothing is written); fn's result is stored as the run's JSON
// output. At most one Options may be given. Registering a name and version
// twice panics: it is a programming error.
func Register[In, Out any](r *Registry, name string, fn func(ctx context.Context, in In) (Out, error), opts ...Options) {
	workflow.Register(r.r, name, fn, opts...)
}

// Step runs fn and records its result as JSON; when the run is replayed (a
// retry, a crash, a resume after a decision) it returns the recorded result
// without calling fn. Use it for computation and reads; fn must have no
// effect outside the process (use [Effect]). Its record is written with the
// next durable step ([Generate], [Effect], [RequestApproval], a wait, the
// run's end), or at once if fn took 100 ms or more: a crash before then runs
// fn again, and nothing recorded after it (docs/WORKFLOWS.md). Step names and
// their order must depend only on the input and earlier steps' results: a
// replay that meets a different step fails the run as non_deterministic.
// Called outside a workflow run, it returns an error.
//
// A failed attempt is retried as [WithRetry] or the workflow's Options.Retry
// says, the run holding no worker while it waits.
func Step[T any](ctx context.Context, name string, fn func(ctx context.Context) (T, error), opts ...StepOption) (T, error) {
	return workflow.Step(ctx, name, fn, stepOptions(opts)...)
}

// EffectContext is what an [Effect] gets: Key, the idempotency key to hand to
// the outside system (the same on every retry of this effect of this run), and
// Tx, the transaction that records the step, for writes to Countersign's own
// database that must happen exactly once with it.
type EffectContext = workflow.EffectContext

// Effect runs a side-effecting step exactly once per run: its result is
// recorded with fn's writes through ec.Tx in one transaction, and an outside
// system that deduplicates on ec.Key sees one effect even when a worker dies
// after the call. An error from fn is retried with backoff like any step's.
// Its undo, if the run is to roll it back, is registered with [Compensate].
func Effect[T any](ctx context.Context, name string, fn func(ctx context.Context, ec EffectContext) (T, error), opts ...StepOption) (T, error) {
	return workflow.Effect(ctx, name, fn, stepOptions(opts)...)
}

// Generate asks the model provider (see [WithModel]) for a JSON object and
// decodes it into T. It is a step: the answer and its token use are recorded,
// so a replay returns the answer without paying for it again. The run's
// model-call and token budgets are checked around the call.
func Generate[T any](ctx context.Context, name string, req ModelRequest, opts ...StepOption) (T, error) {
	return workflow.Generate[T](ctx, name, req, stepOptions(opts)...)
}

// RetryPolicy says how often a failing step is tried (MaxAttempts, the first
// included; default 5) and how long the run waits between attempts
// (InitialInterval, default 1 s, times BackoffFactor, default 2, after each
// failure, at most MaxInterval, default 1 minute). Codes in NonRetryable
// ([Error] codes, "step_error" for an error without one, "timeout") fail the
// run at the first error. Between attempts the run is retrying and holds no
// worker; each failed attempt is recorded with its error. Set a workflow's
// default in Options.Retry, a step's own with [WithRetry].
type RetryPolicy = workflow.RetryPolicy

// StepOption changes how one [Step], [Effect] or [Generate] call behaves.
type StepOption struct{ o workflow.StepOption }

func stepOptions(opts []StepOption) []workflow.StepOption {
	out := make([]workflow.StepOption, len(opts))
	for i, o := range opts {
		out[i] = o.o
	}
	return out
}

// WithRetry gives one step its own retry policy instead of the workflow's.
func WithRetry(p RetryPolicy) StepOption { return StepOption{workflow.WithRetry(p)} }

// Error returns a step error with a code that is retried as the step's
// [RetryPolicy] says, unless the policy lists the code in NonRetryable. Use
// [Fail] for an error that must never be retried.
func Error(code, message string) error { return workflow.Error(code, message) }

// Compensate registers undo as the compensation of the effect named effect of
// the workflow named workflow (register the workflow first). When a run fails
// for good, is rejected at a later approval or is cancelled, the undos of the
// effects it already applied run newest first, each once, with the effect's
// recorded result and an idempotency key of its own (ec.Key: the effect's key
// and ":undo"); writes through ec.Tx commit with the undo's record. The run
// then ends compensated, or compensation_failed when an undo fails after its
// retries, for a human to finish. Undos are registered, not passed to
// [Effect], so that a run resumed by another process after a crash finds them.
func Compensate[T any](r *Registry, workflowName, effect string, undo func(ctx context.Context, ec EffectContext, result T) error) {
	workflow.Compensate(r.r, workflowName, effect, undo)
}

// Action is what a run proposes to do, shown to the reviewer and judged by
// the policy: Kind and Summary are required; Params are what the effect will
// use, Current the present state they change (shown as a diff), Risk low,
// medium or high.
type Action = workflow.Action

// Check is one automated check of an [Action] and its result, shown to the
// reviewer with the action.
type Check = workflow.Check

// Decision is what [RequestApproval] returns. Approved reports an approval,
// also an edited one: Params are then the parameters to apply. A reviewer who
// requested changes is ChangesRequested, with the feedback in Reason. Verdict
// is one of the Verdict constants of package
// github.com/countersign/countersign/vocab; Actor, Rule and PolicyVersion say
// who or which rule decided.
type Decision = workflow.Decision

// RequestApproval is the human gate. The active policy decides: an auto
// action is approved at once and its Decision returned; a batched or explicit
// one becomes a request in the console's inbox and the run waits, holding no
// worker, while RequestApproval returns an error the workflow returns as it is
// (wrapped or not). When a reviewer decides, the run replays to this call,
// which then returns the decision. A rejection ends the run as rejected and
// never returns here.
func RequestApproval(ctx context.Context, action Action) (Decision, error) {
	return workflow.RequestApproval(ctx, action)
}

// RunID returns the id of the run executing in ctx, or "" outside a run.
func RunID(ctx context.Context) string { return workflow.RunID(ctx) }

// Failure is the error that ends a run at once, without retries; Code and
// Message are recorded on the run. [Permanent] and [Fail] make one.
type Failure = workflow.Failure

// Permanent wraps err so that the run fails at once (code permanent_error)
// instead of being retried; a [ModelProvider] returns it for errors that a
// retry will not fix. Permanent(nil) is nil.
func Permanent(err error) error { return workflow.Permanent(err) }

// Fail returns an error that ends the run at once with code and message.
func Fail(code, message string) error { return workflow.Fail(code, message) }

// Sleep is a durable timer: the run waits d holding no worker and no job,
// and survives restarts and deploys meanwhile. The first time a run gets
// here its wake-up time is recorded and shown on the run page, the run is
// parked as sleeping, and Sleep returns an error the workflow returns as it
// is; a job scheduled at the wake-up time resumes the run (within a few
// seconds of it), whose replay then returns nil here. Cancelling a sleeping
// run ends it. name identifies the timer in the run's history.
func Sleep(ctx context.Context, name string, d time.Duration) error {
	return workflow.Sleep(ctx, name, d)
}

// SleepUntil is [Sleep] until t; a time already past returns at once.
func SleepUntil(ctx context.Context, name string, t time.Time) error {
	return workflow.SleepUntil(ctx, name, t)
}

// ErrEventTimeout is matched (errors.Is) by the error [WaitEvent] returns
// when its event did not arrive in time. Returned unhandled, it fails the run
// at once with code event_timeout.
var ErrEventTimeout = workflow.ErrEventTimeout

// WaitEvent waits, holding no worker and no job, for the event called name
// to be delivered to the run (POST /api/v1/runs/{id}/events/{name} with a
// JSON body {"data": …}, or `countersign run signal RUN NAME --data JSON`),
// and returns its data decoded into T. An event delivered before the run got
// here was kept and is returned at once; each WaitEvent of a name takes one
// event of that name, oldest first; a delivery repeated with the same
// idempotency key counts once. While it waits, WaitEvent returns an error the
// workflow returns as it is. After timeout (0: no timeout) it returns an
// error matching [ErrEventTimeout].
func WaitEvent[T any](ctx context.Context, name string, timeout time.Duration) (T, error) {
	return workflow.WaitEvent[T](ctx, name, timeout)
}
