package workflow

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store"
)

// Versions. A run is pinned to the version of its workflow it started with
// (workflow_runs.version) and every execution of it runs that version's
// code, so that a deploy that changes a workflow does not replay a waiting
// run's recorded steps against different code. A process registers every
// version it must still run; new runs start on the newest. A run whose
// version no worker registers fails at once with CodeUnknownVersion rather
// than waiting for one: the worker cannot know whether another process will
// ever have it, and a run parked for a missing version would sit unseen (and
// the sweeper would hand it on until MaxRecoveries). `countersign workflow
// list` shows which versions still have runs, so that one is removed only
// when none are left.

// CodeUnknownVersion is the failure code of a run whose workflow version is
// not registered in the worker that executed it.
const CodeUnknownVersion = "unknown_version"

// add registers def under its name and version; the newest version answers
// Get. A name and version registered twice panics.
func (r *Registry) add(def *Definition) {
	v := def.Options.Version
	if r.versions[def.Name] == nil {
		r.versions[def.Name] = map[int]*Definition{}
	}
	if _, dup := r.versions[def.Name][v]; dup {
		panic(fmt.Sprintf("workflow %q version %d registered twice", def.Name, v))
	}
	r.versions[def.Name][v] = def
	if cur, ok := r.defs[def.Name]; !ok || cur.Options.Version < v {
		r.defs[def.Name] = def
	}
}

// Version returns the version this definition was registered as.
func (d *Definition) Version() int { return d.Options.Version }

// GetVersion returns one version of a workflow.
func (r *Registry) GetVersion(name string, version int) (*Definition, bool) {
	d, ok := r.versions[name][max(version, 1)]
	return d, ok
}

// Versions lists the registered versions of a workflow, oldest first.
func (r *Registry) Versions(name string) []*Definition {
	defs := make([]*Definition, 0, len(r.versions[name]))
	for _, d := range r.versions[name] {
		defs = append(defs, d)
	}
	sort.Slice(defs, func(i, j int) bool { return defs[i].Options.Version < defs[j].Options.Version })
	return defs
}

// unregistered explains why a run's code is missing from this worker: its
// workflow, or only its version.
func (e *Engine) unregistered(run *store.Run) *Failure {
	if _, ok := e.registry.Get(run.Workflow); !ok {
		return &Failure{Code: "unknown_workflow", Message: fmt.Sprintf("workflow %q is not registered in this worker", run.Workflow)}
	}
	var have []string
	for _, d := range e.registry.Versions(run.Workflow) {
		have = append(have, strconv.Itoa(d.Version()))
	}
	return &Failure{Code: CodeUnknownVersion, Message: fmt.Sprintf("workflow %q version %d is not registered in this worker (it has %s)",
		run.Workflow, run.Version, strings.Join(have, ", "))}
}

// definition returns the code of the run's own version, which decides how
// the run takes a rejection.
func (m runMoves) definition(ctx context.Context, tx pgx.Tx, runID, workflow string) (*Definition, bool) {
	run, err := store.RunGet(ctx, tx, runID)
	if err != nil {
		// Unreadable here means the decision's transaction fails on its
		// next statement anyway; the newest version is the best guess.
		return m.engine.registry.Get(workflow)
	}
	return m.engine.registry.GetVersion(workflow, run.Version)
}
