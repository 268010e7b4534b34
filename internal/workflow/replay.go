package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Replay for debugging, and runs under test. A sandbox execution runs a
// workflow function against a history held in memory, with no pool: it
// never touches the database. Strict (replay): every step the code reaches
// must be in the history, where Step, Effect, Generate and RequestApproval
// return the recorded results; the first step the history does not hold ends
// the replay, and any write is refused. Not strict (a scripted run, package
// countersigntest): steps past the history run for real in memory, with
// scripted model answers and decisions and effects given no transaction.

// HistoryFormat names the format `countersign run export` writes.
const HistoryFormat = "countersign.run-history/1"

// History is a run's record as `countersign run export` writes it: the run,
// its steps in order, its approval requests and their decisions.
type History struct {
	Format    string            `json:"format"`
	Run       *store.Run        `json:"run"`
	Steps     []*store.Step     `json:"steps"`
	Requests  []*store.Request  `json:"requests"`
	Decisions []*store.Decision `json:"decisions"`
}

// Export reads a run's history. Returns ErrNotFound for an unknown run.
func Export(ctx context.Context, db store.DBTX, runID string) (*History, error) {
	run, err := store.RunGet(ctx, db, runID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	h := &History{Format: HistoryFormat, Run: run, Decisions: []*store.Decision{}}
	if h.Steps, err = store.StepList(ctx, db, runID); err != nil {
		return nil, err
	}
	if h.Requests, err = store.RequestListByRun(ctx, db, runID); err != nil {
		return nil, err
	}
	// One decision per request at most; a run has few requests (each is a step).
	for _, r := range h.Requests {
		d, err := store.DecisionGetByRequest(ctx, db, r.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		h.Decisions = append(h.Decisions, d)
	}
	return h, nil
}

// maxHistory bounds a history file: a run holds at most MaxSteps steps, each
// bounded by the output limit, so a real one is far smaller.
const maxHistory = 64 << 20

// ReadHistory decodes an exported history, refusing another format.
func ReadHistory(r io.Reader) (*History, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxHistory+1))
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	if len(raw) > maxHistory {
		return nil, fmt.Errorf("%w: history is over %d bytes", ErrInvalidInput, maxHistory)
	}
	var h History
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("%w: history: %v", ErrInvalidInput, err)
	}
	if h.Format != HistoryFormat {
		return nil, fmt.Errorf("%w: history format %q, want %q", ErrInvalidInput, h.Format, HistoryFormat)
	}
	if h.Run == nil {
		return nil, fmt.Errorf("%w: history has no run", ErrInvalidInput)
	}
	return &h, nil
}

// StepRef names a step by kind and name; the zero StepRef is the end of
// the workflow or of the run's record.
type StepRef struct {
	Kind vocab.StepKind `json:"kind,omitempty"`
	Name string         `json:"name,omitempty"`
}

func (r StepRef) String() string {
	if r.Kind == "" {
		return "the end"
	}
	return fmt.Sprintf("%s %q", r.Kind, r.Name)
}

// Divergence is the first place the code parts from the record.
type Divergence struct {
	Step     int     `json:"step"` // 1-based position
	Recorded StepRef `json:"recorded"`
	Reached  StepRef `json:"reached"`
}

func (d *Divergence) String() string {
	return fmt.Sprintf("diverged at step %d: recorded %s, the code reached %s", d.Step, d.Recorded, d.Reached)
}

// ReplayResult is what a replay found.
type ReplayResult struct {
	Workflow   string      `json:"workflow"`
	Version    int         `json:"version"`
	Steps      int         `json:"steps"` // recorded steps the code reached in order
	Divergence *Divergence `json:"divergence,omitempty"`
}

// Deterministic reports whether the code followed the record.
func (r *ReplayResult) Deterministic() bool { return r.Divergence == nil }

func (r *ReplayResult) String() string {
	if r.Divergence != nil {
		return r.Divergence.String()
	}
	return fmt.Sprintf("deterministic: %d steps", r.Steps)
}

// errFrontier ends a strict replay where the record does, and errWrite
// refuses what would write: a replay has no side effects.
var (
	errFrontier = errors.New("replay reached a step the run's history does not hold")
	errWrite    = errors.New("a replay writes nothing")
)

// sandbox holds a sandboxed execution's state in memory.
type sandbox struct {
	strict   bool
	replayed int         // recorded steps reached in order
	div      *Divergence // the first step that parted from the record
	frontier *StepRef    // where a strict replay stopped
	current  string      // the step being entered, for scripted model answers
	steps    []*store.Step
	decide   func(seq int, action Action) (Decision, error) // scripted decisions
}

// enter is next's first look at a step in a sandbox: it notes a divergence
// (next then fails it), counts a recorded step, and stops a strict replay at
// the first step the record does not hold completed.
func (sb *sandbox) enter(x *execution, name string, kind vocab.StepKind) error {
	seq := x.pos
	sb.current = name
	if seq < len(x.history) {
		h := x.history[seq]
		if h.Name != name || h.Kind != kind {
			if sb.div == nil {
				sb.div = &Divergence{Step: seq + 1, Recorded: StepRef{h.Kind, h.Name}, Reached: StepRef{kind, name}}
			}
			return nil
		}
		if h.Status == vocab.StepCompleted {
			sb.replayed++
			return nil
		}
	}
	if sb.strict {
		sb.frontier = &StepRef{kind, name}
		return errFrontier
	}
	return nil
}

// keep stores a step's result in memory; a strict replay refuses it.
func (sb *sandbox) keep(x *execution, s *slot, raw json.RawMessage, tokens int) error {
	if sb.strict {
		return fmt.Errorf("record step %q: %w", s.name, errWrite)
	}
	now := x.engine.now()
	sb.steps = append(sb.steps, &store.Step{RunID: x.run.ID, Seq: s.seq, Name: s.name, Kind: s.kind, Status: vocab.StepCompleted,
		Output: raw, Attempts: s.attempts, Tokens: tokens, StartedAt: s.started, FinishedAt: &now})
	return nil
}

func (sb *sandbox) fail(x *execution, s *slot, stepErr error) {
	if sb.strict {
		return
	}
	msg, now := stepErr.Error(), x.engine.now()
	sb.steps = append(sb.steps, &store.Step{RunID: x.run.ID, Seq: s.seq, Name: s.name, Kind: s.kind, Status: vocab.StepFailed,
		Error: &msg, Attempts: s.attempts, StartedAt: s.started, FinishedAt: &now})
}

// sandboxEffect runs an effect in a scripted run, without a transaction
// (ec.Tx is nil), and refuses it in a replay.
func sandboxEffect[T any](ctx context.Context, x *execution, s *slot, fn func(ctx context.Context, ec EffectContext) (T, error)) (T, error) {
	var zero T
	if x.sandbox.strict {
		return zero, fmt.Errorf("effect %q: %w", s.name, errWrite)
	}
	out, err := fn(ctx, EffectContext{Key: s.key})
	if err != nil {
		err = x.stepError(s, err)
		x.recordFailure(ctx, s, err, 0, 0)
		return zero, err
	}
	if err := x.record(ctx, s, out, 0, 0, nil); err != nil {
		return zero, err
	}
	return out, nil
}

// sandboxApproval answers a gate in a scripted run with the next scripted
// decision; a rejection ends the run unless the workflow handles them.
func (x *execution) sandboxApproval(ctx context.Context, s *slot, action Action) (Decision, error) {
	if x.sandbox.strict {
		return Decision{}, fmt.Errorf("request approval: %w", errWrite)
	}
	if action.Params == nil {
		action.Params = map[string]any{}
	}
	d, err := x.sandbox.decide(s.seq, action)
	if err != nil {
		return Decision{}, err
	}
	if d.Params == nil {
		d.Params = action.Params
	}
	if err := x.record(ctx, s, d, 0, 0, nil); err != nil {
		return Decision{}, err
	}
	if d.Verdict == vocab.VerdictReject && !x.def.Options.HandlesRejection {
		return Decision{}, ErrRejected
	}
	return d, nil
}

// ErrRejected ends a scripted run whose decision was a rejection, as a
// rejection ends a real run.
var ErrRejected = errors.New("run rejected")

// Replay re-executes the registered version of a run's workflow against its
// history, writing nothing and calling no model, and reports the first
// divergence or how many recorded steps the code reached in order. Returns
// ErrUnknownWorkflow when reg lacks the run's workflow or version.
func Replay(ctx context.Context, reg *Registry, h *History) (*ReplayResult, error) {
	run := h.Run
	def, ok := reg.GetVersion(run.Workflow, run.Version)
	if !ok {
		return nil, fmt.Errorf("%w: %q version %d is not registered", ErrUnknownWorkflow, run.Workflow, max(run.Version, 1))
	}
	sb := &sandbox{strict: true}
	x := sandboxExecution(reg, def, run, h.Steps, sb, refusingModel{})
	_, runErr := runSandboxed(withExecution(ctx, x), def, run.Input)
	res := &ReplayResult{Workflow: run.Workflow, Version: def.Version(), Steps: sb.replayed, Divergence: sb.div}
	switch {
	case sb.div != nil:
	case errors.Is(runErr, errFrontier):
		// The code wants a step past the record: where a run under way or one
		// that failed stands, but not where a completed run ended.
		if run.Status == vocab.RunCompleted {
			res.Divergence = &Divergence{Step: x.pos + 1, Reached: *sb.frontier}
		}
	case x.pos < len(h.Steps):
		// The workflow returned (or failed) before the record's end.
		s := h.Steps[x.pos]
		res.Divergence = &Divergence{Step: x.pos + 1, Recorded: StepRef{s.Kind, s.Name}}
	}
	if res.Divergence != nil {
		res.Steps = res.Divergence.Step - 1
	}
	return res, nil
}

// runSandboxed calls the workflow function, turning a panic into the run's
// error: code under test that uses what a sandbox lacks (an effect's ec.Tx)
// fails its run instead of the whole test binary.
func runSandboxed(ctx context.Context, def *Definition, input json.RawMessage) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = Permanent(fmt.Errorf("workflow %q panicked: %v", def.Name, p))
		}
	}()
	return def.run(ctx, input)
}

// sandboxExecution is an execution on an engine with no pool.
func sandboxExecution(reg *Registry, def *Definition, run *store.Run, history []*store.Step, sb *sandbox, model ai.Provider) *execution {
	e := New(Config{Registry: reg, Model: model, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: time.Now})
	return &execution{engine: e, run: run, def: def, history: history, seen: map[string]int{}, sandbox: sb,
		modelCalls: run.ModelCalls, tokens: run.TokensUsed}
}

// refusingModel is a replay's model: a recorded answer never calls it.
type refusingModel struct{}

func (refusingModel) Name() string { return "replay" }

func (refusingModel) Complete(context.Context, ai.Request) (*ai.Response, error) {
	return nil, fmt.Errorf("call the model: %w", errWrite)
}

// Script is what a scripted run answers with: the model's answer for each
// Generate step by step name, and the decisions of its approval gates in
// the order they are reached.
type Script struct {
	Model     map[string]any
	Decisions []Decision
}

// ScriptedRun is a workflow run under test, held in memory.
type ScriptedRun struct {
	History *History // the run as an export would record it
	Output  json.RawMessage
	Err     error // what the workflow returned, nil when it completed
}

// RunScripted runs a workflow in memory, with no database: Step and Effect
// run their functions (an effect gets no transaction), Generate answers from
// script.Model, RequestApproval takes the next of script.Decisions. The
// result's History replays like an exported run's.
func RunScripted(ctx context.Context, reg *Registry, name string, input json.RawMessage, script Script) (*ScriptedRun, error) {
	def, ok := reg.Get(name)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownWorkflow, name)
	}
	if len(input) == 0 {
		input = json.RawMessage("{}")
	}
	now := time.Now()
	run := &store.Run{ID: "00000000-0000-4000-8000-000000000000", Workflow: name, Version: def.Version(), BusinessKey: "scripted",
		Status: vocab.RunRunning, Input: input, Attempt: 1, StartedBy: "test", CreatedAt: now, UpdatedAt: now}
	sb := &sandbox{}
	next := 0
	sb.decide = func(seq int, action Action) (Decision, error) {
		if next >= len(script.Decisions) {
			return Decision{}, Permanent(fmt.Errorf("no scripted decision for step %d (%s: %s)", seq+1, action.Kind, action.Summary))
		}
		d := script.Decisions[next]
		next++
		return d, nil
	}
	model := scriptedModel{sb: sb, answers: script.Model}
	x := sandboxExecution(reg, def, run, nil, sb, model)
	out, runErr := runSandboxed(withExecution(ctx, x), def, input)
	res := &ScriptedRun{Err: runErr}
	switch {
	case runErr == nil:
		raw, err := json.Marshal(out)
		if err != nil {
			return nil, fmt.Errorf("encode output: %w", err)
		}
		res.Output, run.Output, run.Status = raw, raw, vocab.RunCompleted
	case errors.Is(runErr, ErrRejected):
		run.Status = vocab.RunRejected
	default:
		run.Status = vocab.RunFailed
	}
	run.StepsUsed, run.ModelCalls, run.TokensUsed = len(sb.steps), x.modelCalls, x.tokens
	res.History = &History{Format: HistoryFormat, Run: run, Steps: sb.steps, Requests: []*store.Request{}, Decisions: []*store.Decision{}}
	return res, nil
}

// scriptedModel answers Generate steps from a script, by step name.
type scriptedModel struct {
	sb      *sandbox
	answers map[string]any
}

func (scriptedModel) Name() string { return "script" }

func (m scriptedModel) Complete(_ context.Context, req ai.Request) (*ai.Response, error) {
	a, ok := m.answers[m.sb.current]
	if !ok {
		return nil, fmt.Errorf("%w: no scripted answer for model step %q", ai.ErrPermanent, m.sb.current)
	}
	raw, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("%w: encode scripted answer for %q: %v", ai.ErrPermanent, m.sb.current, err)
	}
	return &ai.Response{Content: bytes.TrimSpace(raw)}, nil
}

// PublicRegistry unwraps the public package's Registry (package
// countersign, which sets it when it is initialized: only it knows its
// type), so that package countersigntest can take the registry authors
// build without the public API exporting the engine's.
var PublicRegistry func(reg any) (*Registry, bool)
