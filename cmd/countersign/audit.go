package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"time"

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
	var f store.AuditFilter
	fs.StringVar(&f.Actor, "actor", "", "only events by this actor")
	fs.StringVar(&f.Kind, "kind", "", "only events of this kind (decision.recorded, auth.login, ...)")
	fs.StringVar(&f.Verdict, "verdict", "", "only decisions with this verdict")
	fs.StringVar(&f.Workflow, "workflow", "", "only events of this workflow")
	fs.StringVar(&f.Rule, "rule", "", "only events under this policy rule")
	fs.StringVar(&f.Tier, "tier", "", "only events of this tier")
	fs.StringVar(&f.RunID, "run", "", "only events of this run")
	since := fs.String("since", "", "from this date (2026-11-01) or time (RFC 3339)")
	until := fs.String("until", "", "until this date (inclusive) or time")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != audit.CSV && *format != audit.JSONL {
		return usagef("--format must be csv or jsonl")
	}
	var err error
	if f.Since, err = parseDate(*since, false); err != nil {
		return usagef("--since: %v", err)
	}
	if f.Until, err = parseDate(*until, true); err != nil {
		return usagef("--until: %v", err)
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

// parseDate reads a date or an RFC 3339 time; an end date includes its day.
func parseDate(s string, end bool) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return &t, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return nil, fmt.Errorf("%q is not a date (2026-11-21) or time (RFC 3339)", s)
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return &t, nil
}
