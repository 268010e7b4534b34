package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/google/uuid"

	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

func cmdRun(e *env, args []string) error {
	if len(args) == 0 {
		return usagef("expected a subcommand: start, show, list or cancel")
	}
	switch args[0] {
	case "start":
		return cmdRunStart(e, args[1:])
	case "show":
		return cmdRunShow(e, args[1:])
	case "list":
		return cmdRunList(e, args[1:])
	case "cancel":
		return cmdRunCancel(e, args[1:])
	case "-h", "--help":
		fmt.Fprintln(e.stderr, "Usage: countersign run start|show|list|cancel [flags] (each takes --help)")
		return nil
	}
	return usagef("unknown subcommand %q (want start, show, list or cancel)", args[0])
}

// engine opens an insert-only process: enough to start and cancel runs.
func (e *env) engine(dbURL string) (*app.App, func(), error) {
	cfg, err := e.config(dbURL)
	if err != nil {
		return nil, nil, err
	}
	pool, err := e.pool(cfg)
	if err != nil {
		return nil, nil, err
	}
	// Runs are started of the workflows this binary knows: the demo's.
	a, err := app.New(cfg, pool, app.Options{Logger: e.logger(), Demo: true})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return a, pool.Close, nil
}

func cmdRunStart(e *env, args []string) error {
	fs, dbURL := e.flags("run start", "run start --workflow W --key K [--input JSON]")
	wf := fs.String("workflow", "", "workflow name (required)")
	key := fs.String("key", "", "business key, unique per workflow (required)")
	input := fs.String("input", "{}", "the run's input as a JSON object")
	by := fs.String("by", "cli", "who starts the run (recorded; they may not approve it)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *wf == "" || *key == "" {
		return usagef("--workflow and --key are required")
	}
	if !json.Valid([]byte(*input)) {
		return usagef("--input is not valid JSON")
	}
	a, done, err := e.engine(*dbURL)
	if err != nil {
		return err
	}
	defer done()
	run, created, err := a.Engine.Start(e.ctx, workflow.StartParams{
		Workflow: *wf, BusinessKey: *key, Input: json.RawMessage(*input), StartedBy: *by,
	})
	if errors.Is(err, workflow.ErrUnknownWorkflow) || errors.Is(err, workflow.ErrInvalidInput) {
		return usageError{err.Error()}
	}
	// Input the database refuses (a lone "\ud800" is valid JSON that jsonb
	// cannot hold) is as much the caller's mistake as a missing field.
	if errors.Is(err, store.ErrInvalidInput) {
		return usageError{"--input cannot be stored: " + err.Error()}
	}
	if err != nil {
		return err
	}
	if !created {
		fmt.Fprintf(e.stderr, "a %s run with key %q already exists (%s); not started again\n", run.Workflow, run.BusinessKey, run.Status)
	}
	fmt.Fprintln(e.stdout, run.ID)
	return nil
}

func cmdRunShow(e *env, args []string) error {
	fs, dbURL := e.flags("run show", "run show ID")
	if err := parse(fs, args); err != nil {
		return err
	}
	id, err := runID(fs)
	if err != nil {
		return err
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	run, err := store.RunGet(e.ctx, pool, id)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no run %s", id)
	} else if err != nil {
		return err
	}
	steps, err := store.StepList(e.ctx, pool, id)
	if err != nil {
		return err
	}
	requests, err := store.RequestListByRun(e.ctx, pool, id)
	if err != nil {
		return err
	}
	out := struct {
		*store.Run
		Steps    []*store.Step    `json:"steps"`
		Requests []*store.Request `json:"requests"`
	}{run, steps, requests}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func cmdRunList(e *env, args []string) error {
	fs, dbURL := e.flags("run list", "run list [--status S] [--workflow W] [--limit N] [--json]")
	status := fs.String("status", "", "only runs with this status")
	wf := fs.String("workflow", "", "only runs of this workflow")
	limit := fs.Int("limit", 50, "at most this many runs, newest first (1-500)")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *status != "" && !vocab.RunStatus(*status).Valid() {
		return usagef("unknown status %q (want one of %v)", *status, vocab.RunStatuses())
	}
	if *limit < 1 || *limit > 500 {
		return usagef("--limit must be between 1 and 500")
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	runs, err := store.RunList(e.ctx, pool, store.RunListParams{Status: *status, Workflow: *wf, Limit: *limit})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		for _, r := range runs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tWORKFLOW\tKEY\tSTATUS\tSTEP\tATTEMPT\tCREATED")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.Workflow, r.BusinessKey, r.Status,
			r.CurrentStep, r.Attempt, r.CreatedAt.Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

func cmdRunCancel(e *env, args []string) error {
	fs, dbURL := e.flags("run cancel", "run cancel ID [--by NAME]")
	by := fs.String("by", "cli", "who cancels (recorded in the audit log)")
	if err := parse(fs, args); err != nil {
		return err
	}
	id, err := runID(fs)
	if err != nil {
		return err
	}
	a, done, err := e.engine(*dbURL)
	if err != nil {
		return err
	}
	defer done()
	if err := a.Engine.Cancel(e.ctx, id, *by); errors.Is(err, workflow.ErrNotFound) {
		return fmt.Errorf("no run %s", id)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "cancelled %s\n", id)
	return nil
}

// runID reads the one argument, a run id, and refuses one that is not a uuid
// before it reaches the database.
func runID(fs *flagSet) (string, error) {
	id, err := oneArg(fs, "the run id")
	if err != nil {
		return "", err
	}
	if _, err := uuid.Parse(id); err != nil {
		return "", usagef("the run id must be a uuid, got %q", id)
	}
	return id, nil
}
