package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
)

// registry is what this binary's processes register: its own workflows, the
// demo's when it runs them, and the built-ins. It needs no database.
func (e *env) registry() *workflow.Registry {
	return app.NewRegistry(app.Options{Workflows: e.opts.Workflows, Demo: e.opts.Demo}, ai.NewOffline())
}

// versionRow is one line of `workflow list`.
type versionRow struct {
	Workflow   string `json:"workflow"`
	Version    int    `json:"version"`
	Waiting    int    `json:"waiting"`
	Running    int    `json:"running"`
	Registered bool   `json:"registered"` // in this binary
	Newest     bool   `json:"newest"`     // the version new runs start on
}

func cmdWorkflowList(e *env, args []string) error {
	fs, dbURL := e.flags("workflow list", "workflow list [--json]\n\n"+
		"Lists every workflow version this binary registers or that runs which have not ended still use,\n"+
		"with those runs: WAITING (for a human or another outside event) and RUNNING (queued, running or\n"+
		"retrying). A version is safe to remove from the code when both are 0. REGISTERED says whether\n"+
		"this binary has the version; a run of a version no worker registers fails as unknown_version.")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	counts, err := withDBV(e, *dbURL, func(pool *pgxpool.Pool) ([]store.VersionCount, error) {
		return store.RunVersionCounts(e.ctx, pool)
	})
	if err != nil {
		return err
	}
	type key struct {
		name    string
		version int
	}
	rows := map[key]*versionRow{}
	reg := e.registry()
	for _, name := range reg.Names() {
		newest, _ := reg.Get(name)
		for _, d := range reg.Versions(name) {
			rows[key{name, d.Version()}] = &versionRow{Workflow: name, Version: d.Version(), Registered: true, Newest: d == newest}
		}
	}
	for _, c := range counts {
		r := rows[key{c.Workflow, c.Version}]
		if r == nil {
			r = &versionRow{Workflow: c.Workflow, Version: c.Version}
			rows[key{c.Workflow, c.Version}] = r
		}
		r.Waiting, r.Running = c.Waiting, c.Running
	}
	list := make([]*versionRow, 0, len(rows))
	for _, r := range rows {
		list = append(list, r)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Workflow != list[j].Workflow {
			return list[i].Workflow < list[j].Workflow
		}
		return list[i].Version < list[j].Version
	})
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, r := range list {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := table(e.stdout, "WORKFLOW\tVERSION\tWAITING\tRUNNING\tREGISTERED")
	for _, r := range list {
		reg := "no"
		switch {
		case r.Newest:
			reg = "yes (newest)"
		case r.Registered:
			reg = "yes"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", r.Workflow, r.Version, r.Waiting, r.Running, reg)
	}
	return tw.Flush()
}

func cmdRunExport(e *env, args []string) error {
	fs, dbURL := e.flags("run export", "run export ID [--out FILE]\n\n"+
		"Writes the run's history (the run, its steps, requests and decisions) as JSON, for\n"+
		"`countersign run replay --file` and package countersigntest's ReplayFile.")
	out := fs.String("out", "", "write to this file instead of standard output")
	id, err := runID(fs, args)
	if err != nil {
		return err
	}
	h, err := withDBV(e, *dbURL, func(pool *pgxpool.Pool) (*workflow.History, error) {
		return workflow.Export(e.ctx, pool, id)
	})
	if errors.Is(err, workflow.ErrNotFound) {
		return fmt.Errorf("no run %s", id)
	} else if err != nil {
		return err
	}
	if *out == "" {
		return printJSON(e.stdout, h)
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := printJSON(f, h); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", *out, err)
	}
	return f.Close()
}

func cmdRunReplay(e *env, args []string) error {
	fs, dbURL := e.flags("run replay", "run replay ID | run replay --file FILE [--json]\n\n"+
		"Re-executes this binary's code for the run's workflow version against the run's recorded\n"+
		"history, with no side effects and no writes: recorded steps, model answers and decisions\n"+
		"are returned as recorded, and nothing is called or stored. Prints \"deterministic: N steps\"\n"+
		"(exit 0) or the first divergence: the step number, what the history recorded there and\n"+
		"what the code reached (exit 1). --file replays an export (run export) without a database.")
	file := fs.String("file", "", "replay this exported history instead of reading the run from the database")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	var h *workflow.History
	switch {
	case *file != "" && fs.NArg() == 0:
		f, err := os.Open(*file)
		if err != nil {
			return usageError{err}
		}
		defer f.Close()
		if h, err = workflow.ReadHistory(f); err != nil {
			return usagef("%s: %w", *file, err)
		}
	case *file == "" && fs.NArg() == 1:
		id, err := runID(fs, fs.Args())
		if err != nil {
			return err
		}
		h, err = withDBV(e, *dbURL, func(pool *pgxpool.Pool) (*workflow.History, error) {
			return workflow.Export(e.ctx, pool, id)
		})
		if errors.Is(err, workflow.ErrNotFound) {
			return fmt.Errorf("no run %s", id)
		} else if err != nil {
			return err
		}
	default:
		return usagef("expected a run id or --file, not both")
	}
	res, err := workflow.Replay(e.ctx, e.registry(), h)
	if errors.Is(err, workflow.ErrUnknownWorkflow) {
		return fmt.Errorf("%w; this binary has %s", err, strings.Join(e.registry().Names(), ", "))
	} else if err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(e.stdout, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(e.stdout, res)
	}
	if !res.Deterministic() {
		return exitError{exitFail, fmt.Errorf("run %s is not deterministic under this code", h.Run.ID)}
	}
	return nil
}
