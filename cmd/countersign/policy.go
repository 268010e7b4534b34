package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
)

func cmdPolicy(e *env, args []string) error {
	if len(args) == 0 {
		return usagef("expected a subcommand: check, apply, show, history or simulate")
	}
	switch args[0] {
	case "check":
		return cmdPolicyCheck(e, args[1:])
	case "apply":
		return cmdPolicyApply(e, args[1:])
	case "show":
		return cmdPolicyShow(e, args[1:])
	case "history":
		return cmdPolicyHistory(e, args[1:])
	case "simulate":
		return cmdPolicySimulate(e, args[1:])
	}
	return usagef("unknown subcommand %q (want check, apply, show, history or simulate)", args[0])
}

// loadPolicyFile reads and compiles a policy file; problems print one a line.
func loadPolicyFile(e *env, path string) (*policy.Policy, []byte, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, usagef("read %s: %v", path, err)
	}
	p, err := policy.Load(src)
	var le *policy.LoadError
	if errors.As(err, &le) {
		for _, pr := range le.Problems {
			fmt.Fprintf(e.stderr, "%s:%s\n", path, pr)
		}
		return nil, nil, fmt.Errorf("%s: %d problem(s); nothing was changed", path, len(le.Problems))
	}
	return p, src, err
}

func cmdPolicyCheck(e *env, args []string) error {
	fs, _ := e.flags("policy check", "policy check FILE")
	if err := parse(fs, args); err != nil {
		return err
	}
	path, err := oneArg(fs, "the policy file")
	if err != nil {
		return err
	}
	p, _, err := loadPolicyFile(e, path)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: ok, %d rules\n", path, len(p.Rules))
	return nil
}

func cmdPolicyApply(e *env, args []string) error {
	fs, dbURL := e.flags("policy apply", "policy apply FILE [--by NAME]")
	by := fs.String("by", "cli", "who activates the policy (recorded in the audit log)")
	if err := parse(fs, args); err != nil {
		return err
	}
	path, err := oneArg(fs, "the policy file")
	if err != nil {
		return err
	}
	_, src, err := loadPolicyFile(e, path)
	if err != nil {
		return err
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	v, err := policystore.Apply(e.ctx, pool, src, *by)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "activated policy version %d (sha256 %s)\n", v.Version, v.SHA256[:12])
	return nil
}

func cmdPolicyShow(e *env, args []string) error {
	fs, dbURL := e.flags("policy show", "policy show [--version N]")
	version := fs.Int("version", 0, "show this version instead of the active one")
	if err := parse(fs, args); err != nil {
		return err
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	var v *store.PolicyVersion
	if *version > 0 {
		v, err = store.PolicyGet(e.ctx, pool, *version)
	} else {
		v, err = store.PolicyGetActive(e.ctx, pool)
	}
	if errors.Is(err, store.ErrNotFound) {
		if *version > 0 {
			return fmt.Errorf("no policy version %d", *version)
		}
		return errors.New("no policy has been activated: every action is reviewed explicitly (apply one with countersign policy apply FILE)")
	} else if err != nil {
		return err
	}
	state := "inactive"
	if v.Active {
		state = "active"
	}
	fmt.Fprintf(e.stdout, "# version %d (%s), sha256 %s, created by %s at %s\n%s", v.Version, state, v.SHA256,
		v.CreatedBy, v.CreatedAt.Format(time.RFC3339), v.Source)
	return nil
}

func cmdPolicyHistory(e *env, args []string) error {
	fs, dbURL := e.flags("policy history", "policy history")
	if err := parse(fs, args); err != nil {
		return err
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	vs, err := store.PolicyList(e.ctx, pool)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tACTIVE\tSHA256\tACTIVATED BY\tACTIVATED AT")
	for _, v := range vs {
		by := ""
		if v.ActivatedBy != nil {
			by = *v.ActivatedBy
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.Version, strconv.FormatBool(v.Active), v.SHA256[:12], by,
			v.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func cmdPolicySimulate(e *env, args []string) error {
	fs, dbURL := e.flags("policy simulate", "policy simulate FILE [--since 720h] [--json]")
	since := fs.Duration("since", 720*time.Hour, "replay the requests of this window")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	path, err := oneArg(fs, "the candidate policy file")
	if err != nil {
		return err
	}
	if *since <= 0 {
		return usagef("--since must be positive")
	}
	candidate, _, err := loadPolicyFile(e, path)
	if err != nil {
		return err
	}
	pool, err := e.open(*dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	// e.ctx ends on Ctrl-C, which stops the simulation between two steps.
	sim, err := policystore.Simulate(e.ctx, pool, candidate, time.Now().Add(-*since))
	if err != nil {
		// A cost limit fails the candidate as a load problem does (exit 1).
		return fmt.Errorf("%s: the simulation stopped: %w", path, err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sim)
	}
	fmt.Fprintf(e.stdout, "%d requests since %s; %d would move (%d to a looser tier, %d of those rejected by a human)\n\n",
		sim.Requests, sim.Since.Format(time.RFC3339), sim.Moved, sim.Loosened, sim.RiskyLoosened)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tRECORDED\tCANDIDATE\tMOVED IN\tMOVED OUT\tLOOSENED BUT REJECTED")
	for _, t := range sim.Tiers {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\n", t.Tier, t.Recorded, t.Candidate, t.MovedIn, t.MovedOut, t.LoosenedRejected)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(sim.Examples) > 0 {
		fmt.Fprintln(e.stdout, "\nExamples:")
		for _, m := range sim.Examples {
			verdict := m.Verdict
			if verdict == "" {
				verdict = "undecided"
			}
			fmt.Fprintf(e.stdout, "  %s → %s (%s → %s), %s: %s [%s]\n", m.From, m.To, m.FromRule, m.ToRule, verdict, m.Summary, m.RequestID)
		}
	}
	return nil
}
