package main

import (
	"encoding/hex"
	"fmt"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
)

func cmdAudit(e *env, args []string) error {
	if len(args) == 0 {
		return usagef("expected a subcommand: verify or head")
	}
	fs, dbURL := e.flags("audit "+args[0], "audit verify|head")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if args[0] != "verify" && args[0] != "head" {
		return usagef("unknown subcommand %q (want verify or head)", args[0])
	}
	cfg, err := e.config(*dbURL)
	if err != nil {
		return err
	}
	pool, err := e.pool(cfg)
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
