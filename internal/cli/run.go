package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// withEngine opens an insert-only process, enough to start and cancel runs,
// runs fn on it and closes it.
func (e *env) withEngine(dbURL string, fn func(a *app.App) error) error {
	cfg, err := e.config(dbURL)
	if err != nil {
		return err
	}
	stopTracing, err := e.tracing()
	if err != nil {
		return err
	}
	defer stopTracing()
	pool, err := e.schemaPool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Runs are started of the workflows this binary knows.
	a, err := app.New(cfg, pool, e.appOptions(app.Options{Demo: e.opts.Demo}))
	if err != nil {
		return err
	}
	defer a.Engine.Flush() // before the pool closes
	return fn(a)
}

func cmdRunStart(e *env, args []string) error {
	fs, dbURL := e.flags("run start", "run start --workflow W --key K [--input JSON]"+e.workflowHelp())
	wf := fs.String("workflow", "", "workflow name (required)")
	key := fs.String("key", "", "business key, unique per workflow (required)")
	input := fs.String("input", "{}", "the run's input as a JSON object (required when the workflow's input has fields)")
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
	inputGiven := false
	fs.Visit(func(f *flag.Flag) { inputGiven = inputGiven || f.Name == "input" })
	var run *store.Run
	var created bool
	err := e.withEngine(*dbURL, func(a *app.App) (err error) {
		// The default "{}" decodes into any struct, so a forgotten --input
		// would start a run on empty fields; refuse it when the workflow's
		// input has fields to fill.
		if def, ok := a.Engine.Registry().Get(*wf); ok && !inputGiven && len(def.InputFields()) > 0 {
			return usagef("--input is required: %s needs %s (see run start --help)", *wf, strings.Join(def.InputFields(), ", "))
		}
		run, created, err = a.Engine.Start(e.ctx, workflow.StartParams{
			Workflow: *wf, BusinessKey: *key, Input: json.RawMessage(*input), StartedBy: *by,
		})
		return err
	})
	if errors.Is(err, workflow.ErrUnknownWorkflow) || errors.Is(err, workflow.ErrInvalidInput) {
		return usageError{err}
	}
	// Input the database refuses (a lone "\ud800" is valid JSON that jsonb
	// cannot hold) is as much the caller's mistake as a missing field.
	if errors.Is(err, store.ErrInvalidInput) {
		return usagef("--input cannot be stored: %w", err)
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

// workflowHelp lists the workflows run start can start, with a sample input
// where the workflow gives one; it needs no database.
func (e *env) workflowHelp() string {
	reg := app.NewRegistry(app.Options{Workflows: e.opts.Workflows, Demo: e.opts.Demo}, ai.NewOffline())
	names := reg.Names()
	if len(names) == 0 {
		return "\n\nThis binary registers no workflows."
	}
	var b strings.Builder
	b.WriteString("\n\nWorkflows:")
	for _, n := range names {
		def, _ := reg.Get(n)
		fmt.Fprintf(&b, "\n  %s", n)
		if d := def.Options.Description; d != "" {
			fmt.Fprintf(&b, "  %s", d)
		}
		if def.Options.Example != nil {
			if raw, err := json.Marshal(def.Options.Example); err == nil {
				fmt.Fprintf(&b, "\n      --input '%s'", raw)
			}
		}
	}
	return b.String()
}

func cmdRunShow(e *env, args []string) error {
	fs, dbURL := e.flags("run show", "run show ID")
	id, err := runID(fs, args)
	if err != nil {
		return err
	}
	return e.withDB(*dbURL, func(pool *pgxpool.Pool) error {
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
		return printJSON(e.stdout, struct {
			*store.Run
			Steps    []*store.Step    `json:"steps"`
			Requests []*store.Request `json:"requests"`
		}{run, steps, requests})
	})
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
	runs, err := withDBV(e, *dbURL, func(pool *pgxpool.Pool) ([]*store.Run, error) {
		return store.RunList(e.ctx, pool, store.RunListParams{Status: *status, Workflow: *wf, Limit: *limit})
	})
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
	tw := table(e.stdout, "ID\tWORKFLOW\tVERSION\tKEY\tSTATUS\tSTEP\tATTEMPT\tCREATED")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\t%s\n", r.ID, r.Workflow, r.Version, r.BusinessKey, r.Status,
			r.CurrentStep, r.Attempt, r.CreatedAt.Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

func cmdRunCancel(e *env, args []string) error {
	fs, dbURL := e.flags("run cancel", "run cancel ID [--by NAME]")
	by := fs.String("by", "cli", "who cancels (recorded in the audit log)")
	id, err := runID(fs, args)
	if err != nil {
		return err
	}
	err = e.withEngine(*dbURL, func(a *app.App) error {
		return a.Engine.Cancel(e.ctx, id, *by)
	})
	if errors.Is(err, workflow.ErrNotFound) {
		return fmt.Errorf("no run %s", id)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "cancelled %s\n", id)
	return nil
}

// runID parses the flags and the one argument, a run id, and refuses one
// that is not a uuid before it reaches the database.
func runID(fs *flagSet, args []string) (string, error) {
	id, err := parseOne(fs, args, "the run id")
	if err != nil {
		return "", err
	}
	if _, err := uuid.Parse(id); err != nil {
		return "", usagef("the run id must be a uuid, got %q", id)
	}
	return id, nil
}
