package cli

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
)

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

// policyArg parses the flags and the one argument, a policy file, and reads
// and compiles that file.
func policyArg(e *env, fs *flagSet, args []string) (string, *policy.Policy, []byte, error) {
	path, err := parseOne(fs, args, "the policy file")
	if err != nil {
		return "", nil, nil, err
	}
	p, src, err := loadPolicyFile(e, path)
	return path, p, src, err
}

func cmdPolicyCheck(e *env, args []string) error {
	fs, _ := e.flags("policy check", "policy check FILE")
	path, p, _, err := policyArg(e, fs, args)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: ok, %d rules\n", path, len(p.Rules))
	return nil
}

func cmdPolicyApply(e *env, args []string) error {
	fs, dbURL := e.flags("policy apply", "policy apply FILE [--by NAME]")
	by := fs.String("by", "cli", "who activates the policy (recorded in the audit log)")
	_, _, src, err := policyArg(e, fs, args)
	if err != nil {
		return err
	}
	v, err := withDBV(e, *dbURL, func(pool *pgxpool.Pool) (*store.PolicyVersion, error) {
		return policystore.Apply(e.ctx, pool, src, *by)
	})
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
	v, err := withDBV(e, *dbURL, func(pool *pgxpool.Pool) (*store.PolicyVersion, error) {
		if *version > 0 {
			return store.PolicyGet(e.ctx, pool, *version)
		}
		return store.PolicyGetActive(e.ctx, pool)
	})
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
	fs, _ := e.flags("policy history", "policy history")
	vs, err := parseQuery(e, fs, args, store.PolicyList)
	if err != nil {
		return err
	}
	tw := table(e.stdout, "VERSION\tACTIVE\tSHA256\tACTIVATED BY\tACTIVATED AT")
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
	path, err := parseOne(fs, args, "the candidate policy file")
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
	// e.ctx ends on Ctrl-C, which stops the simulation between two steps.
	sim, err := withDBV(e, *dbURL, func(pool *pgxpool.Pool) (*policystore.Simulation, error) {
		// The grants in force apply to whichever version is active.
		grants, err := policystore.LiveGrants(e.ctx, pool, nil)
		if err != nil {
			return nil, err
		}
		return policystore.Simulate(e.ctx, pool, policystore.WithGrants(candidate, grants), time.Now().Add(-*since))
	})
	if err != nil {
		// A cost limit fails the candidate as a load problem does (exit 1).
		return fmt.Errorf("%s: the simulation stopped: %w", path, err)
	}
	if *asJSON {
		return printJSON(e.stdout, sim)
	}
	fmt.Fprintf(e.stdout, "%d requests since %s; %d decided differently, %d in another tier; %d loosened (%d of those rejected by a human)\n",
		sim.Requests, sim.Since.Format(time.RFC3339), sim.Changed, sim.Moved, sim.Loosened, sim.RiskyLoosened)
	for _, f := range policystore.Fields() {
		if n := sim.Loosenings[f]; n > 0 {
			fmt.Fprintf(e.stdout, "  looser %s: %d\n", f, n)
		}
	}
	fmt.Fprintln(e.stdout)
	tw := table(e.stdout, "TIER\tRECORDED\tCANDIDATE\tMOVED IN\tMOVED OUT\tLOOSENED BUT REJECTED")
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
			for _, c := range m.Changes {
				flag := ""
				if c.Looser {
					flag = " LOOSER"
				}
				fmt.Fprintf(e.stdout, "      %s: %s → %s%s\n", c.Field, c.From, c.To, flag)
			}
		}
	}
	return nil
}
