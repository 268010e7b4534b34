package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// execution is one job's pass through a run's workflow function.
type execution struct {
	engine     *Engine
	run        *store.Run
	owner      string // the execution's lease token: its records are refused once it is lost
	def        *Definition
	history    []*store.Step
	pos        int
	seen       map[string]int
	complete   CompleteFunc
	jobless    bool     // no River job of its own (Job.Jobless)
	handoff    *Handoff // claims the next run with its completion (Job.Next)
	suspended  bool
	modelCalls int
	tokens     int
	sandbox    *sandbox // in memory, no database: a replay or a scripted run (replay.go)
	failed     *slot    // the step whose failure this execution last recorded
	// pending holds the records of pure steps (Step) not yet written: they
	// are written with the next durable write (a model call, an effect, a
	// gate, a wait, a failure, the run's end), in the same statement or
	// transaction. A crash before then repeats those pure steps only.
	pending []store.StepRecord
	// written counts the pending records written in the transaction in
	// progress; withTx drops them once it commits.
	written int
}

type execKey struct{}

func withExecution(ctx context.Context, x *execution) context.Context {
	return context.WithValue(ctx, execKey{}, x)
}

func executionFrom(ctx context.Context) (*execution, error) {
	x, ok := ctx.Value(execKey{}).(*execution)
	if !ok {
		return nil, errors.New("workflow step called outside a workflow run")
	}
	if x.suspended {
		return nil, ErrSuspended
	}
	return x, nil
}

// RunID returns the id of the run executing in ctx, or "" outside a run.
func RunID(ctx context.Context) string {
	if x, ok := ctx.Value(execKey{}).(*execution); ok {
		return x.run.ID
	}
	return ""
}

// slot is the position a step takes in the run's history.
type slot struct {
	seq      int
	name     string
	kind     vocab.StepKind
	key      string      // idempotency key: run:name, run:name#2 for the second use
	prior    *store.Step // what the history holds at this position, if anything
	attempts int         // this attempt's number for the step
	started  time.Time
	clock    time.Time    // the real time it started (started may be a test's clock)
	retry    *RetryPolicy // the step's own policy (WithRetry), nil for the workflow's
	model    string       // the model a model step's answer names, for the metrics
}

// next claims the next position for a step and checks it against the history.
func (x *execution) next(name string, kind vocab.StepKind) (*slot, error) {
	if x.sandbox != nil {
		if err := x.sandbox.enter(x, name, kind); err != nil {
			return nil, err
		}
	}
	s := &slot{seq: x.pos, name: name, kind: kind, attempts: 1, started: x.engine.now(), clock: time.Now()}
	x.pos++
	x.seen[name]++
	s.key = x.run.ID + ":" + name
	if n := x.seen[name]; n > 1 {
		s.key = fmt.Sprintf("%s#%d", s.key, n)
	}
	if s.seq < len(x.history) {
		h := x.history[s.seq]
		if h.Name != name || h.Kind != kind {
			return nil, fmt.Errorf("%w: step %d is %s %q in the run's history, but the code now reaches %s %q",
				ErrNonDeterministic, s.seq+1, h.Kind, h.Name, kind, name)
		}
		s.prior = h
		s.attempts = h.Attempts + 1
		if h.Status == vocab.StepCompleted {
			return s, nil
		}
	}
	if s.seq >= x.def.Options.MaxSteps {
		return nil, fmt.Errorf("%w: the run reached its limit of %d steps at %q", ErrBudgetExceeded, x.def.Options.MaxSteps, name)
	}
	return s, nil
}

func (s *slot) replayed() bool { return s.prior != nil && s.prior.Status == vocab.StepCompleted }

// begin claims a step's place in the run; done reports that the history
// already holds its result, returned in out.
func begin[T any](ctx context.Context, name string, kind vocab.StepKind) (x *execution, s *slot, out T, done bool, err error) {
	if x, err = executionFrom(ctx); err != nil {
		return nil, nil, out, false, err
	}
	if s, err = x.next(name, kind); err != nil {
		return nil, nil, out, false, err
	}
	if s.replayed() {
		out, err = replay[T](s)
		return x, s, out, true, err
	}
	return x, s, out, false, nil
}

func replay[T any](s *slot) (T, error) {
	var out T
	if err := json.Unmarshal(s.prior.Output, &out); err != nil {
		return out, Permanent(fmt.Errorf("step %q: recorded result does not decode into %T: %w", s.name, out, err))
	}
	return out, nil
}

// CodeOutputTooLarge is the failure code of a run whose step returned more
// than the output limit allows.
const CodeOutputTooLarge = "output_too_large"

// OutputLimit is the largest result, in bytes of JSON, that a step of
// workflow may record, and the largest action it may propose: callers that
// take an action from outside check it before starting a run.
func (e *Engine) OutputLimit(workflow string) int { return e.outputLimit(workflow) }

// outputLimit is the largest result, in bytes of JSON, a step of workflow may
// record.
func (e *Engine) outputLimit(workflow string) int {
	if def, ok := e.registry.Get(workflow); ok && def.Options.MaxStepOutput > 0 {
		return def.Options.MaxStepOutput
	}
	return e.maxOutput
}

// checkOutput fails a step whose output (what: its result, the model's
// answer, the proposed action) is over the limit, before anything stores it:
// whatever is recorded is replayed, shown to reviewers and exported, and one
// huge field stalls all of them. The failure is permanent; retrying the same
// call would only pay for the same answer again.
func (x *execution) checkOutput(s *slot, what string, size int) error {
	limit := x.engine.outputLimit(x.run.Workflow)
	if size <= limit {
		return nil
	}
	return &Failure{Code: CodeOutputTooLarge, Message: fmt.Sprintf("%s of step %q is %d bytes of JSON, over the limit of %d bytes",
		what, s.name, size, limit)}
}

// keep records a step's result; one over the output limit is recorded as
// the step's failure instead.
func (x *execution) keep(ctx context.Context, s *slot, out any, tokens, modelCalls int) error {
	err := x.record(ctx, s, out, tokens, modelCalls, x.engine.pool)
	var f *Failure
	if errors.As(err, &f) && f.Code == CodeOutputTooLarge {
		x.recordFailure(ctx, s, err, tokens, modelCalls)
	}
	return err
}

// record stores a step's result. Outside a transaction it runs on a context
// that River's job timeout does not cancel: a result that arrived is kept
// rather than paid for again (a model call, a slow step); the lease still
// refuses it if the run was handed on meanwhile.
//
// A pure step's result (Step, outside a transaction) is held in memory
// instead and written with the next durable record; every other record
// writes the held ones with its own, in one statement.
func (x *execution) record(ctx context.Context, s *slot, out any, tokens, modelCalls int, db store.DBTX) error {
	_, inTx := db.(pgx.Tx)
	if !inTx {
		ctx = context.WithoutCancel(ctx)
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return Permanent(fmt.Errorf("step %q: encode result: %w", s.name, err))
	}
	if err := x.checkOutput(s, "the result", len(raw)); err != nil {
		return err
	}
	if x.sandbox != nil {
		return x.sandbox.keep(x, s, raw, tokens)
	}
	rec := store.StepRecord{
		RunID: x.run.ID, Seq: s.seq, Name: s.name, Kind: s.kind, Output: raw, Attempts: s.attempts,
		Tokens: tokens, ModelCalls: modelCalls, StartedAt: s.started, FinishedAt: x.engine.now(), Owner: x.owner, Model: s.model,
	}
	if s.kind == vocab.StepKindStep && !inTx && time.Since(s.clock) < holdUnder && !mayBeRefused(raw) {
		x.pending = append(x.pending, rec)
		return nil
	}
	err = store.StepComplete(ctx, db, append(slices.Clip(x.pending), rec)...)
	switch {
	case err == nil && inTx:
		x.written = len(x.pending)
	case err == nil:
		x.pending = nil
	case errors.Is(err, store.ErrNotFound):
		return ErrCancelled // cancelled, or this execution lost the run
	case errors.Is(err, store.ErrInvalidInput):
		// PostgreSQL refuses the value itself (a lone surrogate in a string):
		// the same result would be refused on every retry.
		return Permanent(fmt.Errorf("step %q: the result cannot be stored: %w", s.name, err))
	}
	return err
}

// holdUnder is how long a pure step may take and still have its record
// held in memory: one that took longer is recorded at once, as a durable
// step is, since repeating it after a crash would cost far more than the
// commit saved (a commit takes about a millisecond).
const holdUnder = 100 * time.Millisecond

// mayBeRefused reports whether PostgreSQL might refuse a result as JSON
// (jsonb rejects \u0000 and lone surrogates): such a result is written at
// once, on its own, so that the refusal is the step's own and not that of
// a later step written with it.
func mayBeRefused(raw []byte) bool {
	return bytes.Contains(raw, []byte(`\u0000`)) || bytes.Contains(bytes.ToLower(raw), []byte(`\ud`))
}

// flushTx writes the held records of pure steps in tx, before a durable
// record that does not go through record (a gate parking the run, a wait).
// Returns ErrCancelled when the execution no longer holds the run.
func (x *execution) flushTx(ctx context.Context, tx pgx.Tx) error {
	if len(x.pending) == 0 || x.sandbox != nil {
		return nil
	}
	err := store.StepComplete(ctx, tx, x.pending...)
	if errors.Is(err, store.ErrNotFound) {
		return ErrCancelled
	}
	if err == nil {
		x.written = len(x.pending)
	}
	return err
}

// flush writes the held records of pure steps on their own, before a
// failure is recorded, so that the run's timeline shows what ran before
// it and a retry replays them. A refusal is only logged: the failure's own
// record decides what happens to the run.
func (x *execution) flush(ctx context.Context) {
	if len(x.pending) == 0 || x.sandbox != nil {
		return
	}
	err := store.StepComplete(context.WithoutCancel(ctx), x.engine.pool, x.pending...)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			x.engine.logger.Warn("record pure steps", "run", x.run.ID, "err", err)
		}
		return
	}
	x.pending = nil
}

// withTx runs fn in a transaction on the pool and, once it commits, drops
// the held records that fn wrote (record and flushTx count them).
func (x *execution) withTx(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	x.written = 0
	err := store.WithTx(ctx, x.engine.pool, fn)
	if err == nil {
		x.pending = x.pending[x.written:]
	}
	x.written = 0
	return err
}

// withEffectTx is withTx for an effect: the transaction starts by
// recording key in the side-effect ledger (store.WithEffectTx).
func (x *execution) withEffectTx(ctx context.Context, key, name string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	x.written = 0
	err := store.WithEffectTx(ctx, x.engine.pool, key, x.run.ID, name, fn)
	if err == nil {
		x.pending = x.pending[x.written:]
	}
	x.written = 0
	return err
}

func (x *execution) recordFailure(ctx context.Context, s *slot, stepErr error, tokens, modelCalls int) {
	if x.sandbox != nil {
		x.sandbox.fail(x, s, stepErr)
		return
	}
	x.flush(ctx)
	err := store.StepFail(context.WithoutCancel(ctx), x.engine.pool, store.StepRecord{
		RunID: x.run.ID, Seq: s.seq, Name: s.name, Kind: s.kind, Error: stepErr.Error(),
		Attempts: s.attempts, Tokens: tokens, ModelCalls: modelCalls, StartedAt: s.started, Owner: x.owner, Model: s.model,
	})
	if err != nil {
		x.engine.logger.Error("record failed step", "run", x.run.ID, "step", s.name, "err", err)
	}
	x.recordAttempt(ctx, s, stepErr)
}

// stepError explains a failed step attempt, naming a timeout as one.
func (x *execution) stepError(s *slot, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("step %q timed out after %s: %w", s.name, x.def.Options.StepTimeout, err)
	}
	return fmt.Errorf("step %q: %w", s.name, err)
}

// Step runs fn and records its result as JSON. When the run is replayed (a
// retry, a crash, a resume after a decision) it returns the recorded result
// without calling fn. fn must not have effects outside the process; use
// Effect for those. The record is written with the next durable one (a model
// call, an effect, a gate, a wait, the run's end; at once if fn took 100 ms
// or more), so a crash before then runs fn again, and nothing after it.
//
// A failed attempt is retried as the step's RetryPolicy (WithRetry) or the
// workflow's (Options.Retry) says, the run holding no worker in between.
func Step[T any](ctx context.Context, name string, fn func(ctx context.Context) (T, error), opts ...StepOption) (_ T, err error) {
	var zero T
	x, s, out, done, err := begin[T](ctx, name, vocab.StepKindStep)
	if done || err != nil {
		return out, err
	}
	x.applyStepOptions(s, opts)
	ctx, span := x.traceStep(ctx, s) // trace.go
	defer func() { traceStepped(span, err) }()
	sctx, cancel := context.WithTimeout(ctx, x.def.Options.StepTimeout)
	defer cancel()
	out, err = fn(sctx)
	if err != nil {
		err = x.stepError(s, err)
		x.recordFailure(ctx, s, err, 0, 0)
		return zero, err
	}
	if err := x.keep(ctx, s, out, 0, 0); err != nil {
		return zero, err
	}
	return out, nil
}

// EffectContext is what an effect step gets: the idempotency key to hand to
// the outside system, and the transaction that records the step, for effects
// on Countersign's own database.
type EffectContext struct {
	Key string
	Tx  pgx.Tx
}

// Effect runs a side-effecting step exactly once per run. Its key is stable
// across retries (run id and step name, no attempt number): an outside system
// that deduplicates on it sees one effect. Writes through ec.Tx commit
// together with the step's record, so effects on our own database happen
// exactly once.
func Effect[T any](ctx context.Context, name string, fn func(ctx context.Context, ec EffectContext) (T, error), opts ...StepOption) (_ T, err error) {
	var zero T
	x, s, out, done, err := begin[T](ctx, name, vocab.StepKindEffect)
	if done || err != nil {
		return out, err
	}
	x.applyStepOptions(s, opts)
	ctx, span := x.traceStep(ctx, s) // trace.go
	defer func() { traceStepped(span, err) }()
	sctx, cancel := context.WithTimeout(ctx, x.def.Options.StepTimeout)
	defer cancel()
	if x.sandbox != nil {
		return sandboxEffect(sctx, x, s, fn)
	}
	// The ledger and the step record commit together, so a key already in
	// the ledger (store.ErrEffectRecorded) means that a concurrent
	// execution of the same run got here first.
	err = x.withEffectTx(sctx, s.key, name, func(ctx context.Context, tx pgx.Tx) error {
		var err error
		if out, err = fn(sctx, EffectContext{Key: s.key, Tx: tx}); err != nil {
			return err
		}
		return x.record(sctx, s, out, 0, 0, tx)
	})
	if errors.Is(err, ErrCancelled) {
		return zero, err
	}
	if err != nil {
		err = x.stepError(s, err)
		x.recordFailure(ctx, s, err, 0, 0)
		return zero, err
	}
	return out, nil
}

// Generate asks the configured model for a JSON object and decodes it into T.
// It is a step: a replay returns the recorded answer and pays for no tokens.
// The run's model-call and token budgets are checked around the call.
func Generate[T any](ctx context.Context, name string, req ai.Request, options ...StepOption) (_ T, err error) {
	var zero T
	x, s, out, done, err := begin[T](ctx, name, vocab.StepKindModel)
	if done || err != nil {
		return out, err
	}
	x.applyStepOptions(s, options)
	ctx, span := x.traceStep(ctx, s) // trace.go
	defer func() { traceStepped(span, err) }()
	opts := x.def.Options
	if x.modelCalls >= opts.MaxModelCalls {
		return zero, fmt.Errorf("%w: the run used its %d model calls before %q", ErrBudgetExceeded, opts.MaxModelCalls, name)
	}
	sctx, cancel := context.WithTimeout(ctx, opts.StepTimeout)
	defer cancel()
	resp, err := x.engine.model.Complete(sctx, req)
	tokens := 0
	s.model = x.engine.model.Name()
	if resp != nil {
		tokens = resp.Usage.TotalTokens
		if resp.Model != "" {
			s.model = resp.Model
		}
	}
	x.modelCalls++
	x.tokens += tokens
	if err == nil && x.tokens > opts.MaxTokens {
		err = fmt.Errorf("%w: %d tokens used, the limit is %d", ErrBudgetExceeded, x.tokens, opts.MaxTokens)
	}
	if err == nil {
		// Checked before decoding: a huge answer is refused, not parsed.
		err = x.checkOutput(s, "the model's answer", len(resp.Content))
	}
	if err == nil {
		if uerr := json.Unmarshal(resp.Content, &out); uerr != nil {
			err = fmt.Errorf("%w: does not decode into %T: %v", ai.ErrMalformed, out, uerr)
		}
	}
	if err != nil {
		err = x.stepError(s, err)
		x.recordFailure(ctx, s, err, tokens, 1)
		if errors.Is(err, ai.ErrPermanent) {
			return zero, Permanent(err)
		}
		return zero, err
	}
	if err := x.keep(ctx, s, out, tokens, 1); err != nil {
		return zero, err
	}
	return out, nil
}
