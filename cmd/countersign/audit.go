package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
)

func cmdAudit(e *env, args []string) error {
	if len(args) == 0 {
		return usagef("expected a subcommand: verify, head or export")
	}
	if args[0] == "export" {
		return cmdAuditExport(e, args[1:])
	}
	fs, dbURL := e.flags("audit "+args[0], "audit verify|head")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if args[0] != "verify" && args[0] != "head" {
		return usagef("unknown subcommand %q (want verify, head or export)", args[0])
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// Link whatever committed since the last chaining, so that the answer
	// covers every committed event.
	if _, err := audit.Chain(e.ctx, pool); err != nil {
		return err
	}
	if args[0] == "head" {
		seq, hash, err := store.AuditHead(e.ctx, pool)
		if err != nil {
			return err
		}
		if hash == nil {
			hash = audit.Genesis
		}
		fmt.Fprintf(e.stdout, "%d %s\n", seq, hex.EncodeToString(hash))
		return nil
	}
	res, err := audit.Verify(e.ctx, pool)
	if err != nil {
		return err
	}
	if !res.OK() {
		return fmt.Errorf("broken at event %d: %s (%d events before it verify)", res.BrokenAt, res.Problem, res.Events)
	}
	fmt.Fprintf(e.stdout, "ok: %d events, head %s\n", res.Events, res.HeadHex())
	if res.Unchained > 0 {
		fmt.Fprintf(e.stderr, "%d events committed during the check are not yet chained\n", res.Unchained)
	}
	return nil
}

func cmdAuditExport(e *env, args []string) error {
	fs, dbURL := e.flags("audit export", "audit export [--format csv|jsonl] [--out FILE] [filters]")
	format := fs.String("format", audit.JSONL, "csv or jsonl")
	out := fs.String("out", "", "write to this file instead of stdout")
	filters := map[string]*string{}
	for _, name := range audit.FilterNames {
		filters[name] = fs.String(name, "", filterUsage[name])
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != audit.CSV && *format != audit.JSONL {
		return usagef("--format must be csv or jsonl")
	}
	f, err := audit.ParseFilter(func(name string) string { return *filters[name] })
	if err != nil {
		return usagef("--%v", err)
	}
	w := e.stdout
	if *out != "" {
		file, err := os.Create(*out)
		if err != nil {
			return usagef("--out: %v", err)
		}
		defer file.Close()
		w = file
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := audit.Chain(e.ctx, pool); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	n, err := audit.Export(e.ctx, pool, f, *format, bw, nil)
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "exported %d events\n", n)
	return nil
}

var filterUsage = map[string]string{
	"actor":    "only events by this actor",
	"kind":     "only events of this kind (decision.recorded, auth.login, ...)",
	"verdict":  "only decisions with this verdict",
	"workflow": "only events of this workflow",
	"rule":     "only events under this policy rule",
	"tier":     "only events of this tier",
	"run":      "only events of this run",
	"since":    "from this date (2026-11-01) or time (RFC 3339)",
	"until":    "until this date (inclusive) or time",
}
