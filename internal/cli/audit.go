package cli

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
)

// chained opens the database and links whatever committed since the last
// chaining, so that what fn reads covers every committed event.
func chained(e *env, dbURL string, fn func(pool *pgxpool.Pool) error) error {
	return e.withDB(dbURL, func(pool *pgxpool.Pool) error {
		if _, err := audit.Chain(e.ctx, pool); err != nil {
			return err
		}
		return fn(pool)
	})
}

// cmdAuditHead prints the chain head, or saves it for `audit verify --against`.
func cmdAuditHead(e *env, args []string) error {
	fs, dbURL := e.flags("audit head", "audit head [--json] [--out FILE]")
	asJSON := fs.Bool("json", false, "print the head as JSON (what --out writes)")
	out := fs.String("out", "", "write the head as JSON to this file, for audit verify --against")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	var seq int64
	var hash []byte
	err := chained(e, *dbURL, func(pool *pgxpool.Pool) (err error) {
		seq, hash, err = store.AuditHead(e.ctx, pool)
		return err
	})
	if err != nil {
		return err
	}
	if hash == nil {
		hash = audit.Genesis
	}
	h := audit.Head{Seq: seq, Hash: hex.EncodeToString(hash), At: time.Now().UTC().Truncate(time.Second)}
	if *out == "" && !*asJSON {
		fmt.Fprintln(e.stdout, h)
		return nil
	}
	b, _ := json.Marshal(h)
	b = append(b, '\n')
	if *out == "" {
		_, err = e.stdout.Write(b)
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return usagef("--out: %v", err)
	}
	fmt.Fprintf(e.stdout, "%s (saved to %s)\n", h, *out)
	return nil
}

// cmdAuditVerify verifies the chain and, with --head or --against, that it
// still holds a head saved earlier.
func cmdAuditVerify(e *env, args []string) error {
	fs, dbURL := e.flags("audit verify", "audit verify [--head HASH|SEQ:HASH | --against FILE]")
	headFlag := fs.String("head", "", "a head printed earlier by audit head (HASH, SEQ:HASH or \"SEQ HASH\")")
	against := fs.String("against", "", "a file written by audit head --out")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	var saved *audit.Head
	switch {
	case *headFlag != "" && *against != "":
		return usagef("give --head or --against, not both")
	case *headFlag != "":
		h, err := audit.ParseHead(*headFlag)
		if err != nil {
			return usagef("--head: %v", err)
		}
		saved = &h
	case *against != "":
		b, err := os.ReadFile(*against)
		if err != nil {
			return usagef("--against: %v", err)
		}
		h, err := audit.ParseHead(string(b))
		if err != nil {
			return usagef("--against %s: %v", *against, err)
		}
		saved = &h
	}
	var res audit.Result
	err := chained(e, *dbURL, func(pool *pgxpool.Pool) (err error) {
		res, err = audit.VerifyHead(e.ctx, pool, saved)
		return err
	})
	if err != nil {
		return err
	}
	if res.BrokenAt != 0 {
		return fmt.Errorf("broken at event %d: %s (%d events before it verify)", res.BrokenAt, res.Problem, res.Events)
	}
	if res.HeadProblem != "" {
		return fmt.Errorf("%s (%d events verify on their own)", res.HeadProblem, res.Events)
	}
	if res.OffChain > 0 {
		return fmt.Errorf("%d events are neither on the chain nor queued for it (%d events verify)", res.OffChain, res.Events)
	}
	fmt.Fprintf(e.stdout, "ok: %d events, head %s", res.Events, res.HeadHex())
	switch {
	case saved != nil && saved.Seq > 0:
		fmt.Fprintf(e.stdout, ", holds the saved head (event %d)", saved.Seq)
	case saved != nil:
		fmt.Fprint(e.stdout, ", holds the saved head")
	}
	fmt.Fprintln(e.stdout)
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
	var n int
	err = chained(e, *dbURL, func(pool *pgxpool.Pool) (err error) {
		bw := bufio.NewWriterSize(w, 64<<10)
		if n, err = audit.Export(e.ctx, pool, f, *format, bw, nil); err != nil {
			return err
		}
		return bw.Flush()
	})
	if err != nil {
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
