// Package countersigntest tests workflows without a server: it replays runs
// exported with `countersign run export` against the code as it is now, and
// runs workflows in memory with scripted model answers and decisions. Keep
// the exports of real runs beside the tests; a change that would make a
// waiting run take a different path fails them, before a deploy does.
//
// Nothing here touches a database. A replay calls no model, runs no effect
// and writes nothing: every step the code reaches must be in the history,
// where it returns the recorded result.
package countersigntest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/countersign/countersign"
	"github.com/countersign/countersign/internal/workflow"
)

// History is a run's record as `countersign run export` writes it.
type History = workflow.History

// Result is what a replay found: Deterministic, or the first Divergence
// (step number, the recorded step and the one the code reached). Its String
// is "deterministic: N steps" or the divergence.
type Result = workflow.ReplayResult

// Script answers a run under test: Model maps a Generate step's name to the
// answer the model gives (any value that encodes to a JSON object), and
// Decisions are the reviewers' decisions of its RequestApproval calls, in the
// order the run reaches them.
type Script = workflow.Script

// Outcome is a workflow run made in memory by [Run] or [Execute].
type Outcome struct {
	// Output is the workflow's result as JSON, when it completed.
	Output json.RawMessage
	// Err is what the workflow returned; nil when it completed.
	Err error
	// History is the run as an export records it: [Outcome.Save] writes it
	// for [ReplayFile].
	History *History
}

// Save writes the run's history to path as `countersign run export` would,
// to replay in later tests.
func (r *Outcome) Save(path string) error {
	raw, err := json.MarshalIndent(r.History, "", "  ")
	if err != nil {
		return fmt.Errorf("encode history: %w", err)
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}

// registry unwraps the public registry.
func registry(reg *countersign.Registry) (*workflow.Registry, error) {
	r, ok := workflow.PublicRegistry(reg)
	if !ok {
		return nil, fmt.Errorf("countersigntest: a registry made with countersign.NewRegistry is needed")
	}
	return r, nil
}

// Check replays the history in the file at path against reg: the version of
// the run's workflow it registers. An error means the file or the registry
// could not be used, not that the run diverged: see Result.Deterministic.
func Check(reg *countersign.Registry, path string) (*Result, error) {
	r, err := registry(reg)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open history: %w", err)
	}
	defer f.Close()
	h, err := workflow.ReadHistory(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return workflow.Replay(context.Background(), r, h)
}

// ReplayFile replays the history at path against reg and fails t at the
// first divergence, naming the step.
func ReplayFile(t testing.TB, reg *countersign.Registry, path string) *Result {
	t.Helper()
	res, err := Check(reg, path)
	if err != nil {
		t.Fatalf("replay %s: %v", path, err)
	}
	if !res.Deterministic() {
		t.Fatalf("replay %s (%s version %d): %s", path, res.Workflow, res.Version, res)
	}
	return res
}

// Execute runs the newest version of a workflow in memory: Step and Effect
// call their functions (an effect's EffectContext has its Key but no Tx),
// Generate takes the script's answer for its step name and RequestApproval
// the script's next decision; a rejection ends the run (its Err) unless the
// workflow was registered with HandlesRejection. input is encoded as JSON.
func Execute(reg *countersign.Registry, name string, input any, script Script) (*Outcome, error) {
	r, err := registry(reg)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(input)
	if err != nil {
		return nil, fmt.Errorf("encode input: %w", err)
	}
	res, err := workflow.RunScripted(context.Background(), r, name, raw, script)
	if err != nil {
		return nil, err
	}
	return &Outcome{Output: res.Output, Err: res.Err, History: res.History}, nil
}

// Run is Execute for a test: it fails t when the run cannot be made, and
// returns the run, whose Err says how the workflow ended.
func Run(t testing.TB, reg *countersign.Registry, name string, input any, script Script) *Outcome {
	t.Helper()
	run, err := Execute(reg, name, input, script)
	if err != nil {
		t.Fatalf("run %s: %v", name, err)
	}
	return run
}
