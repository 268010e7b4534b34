package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/store"
)

// group is a command made of subcommands (`countersign token create`): it
// picks the subcommand by the first argument, so that every group answers a
// missing, unknown or --help subcommand the same way.
type group struct {
	name string
	subs []subcommand
}

// subcommand is one verb of a group; its run parses its own flags.
type subcommand struct {
	name    string
	summary string
	run     func(e *env, args []string) error
}

// run dispatches args to the subcommand they name. A missing or unknown one
// is a usage error; -h, --help and help print the list and succeed.
func (g group) run(e *env, args []string) error {
	names := make([]string, len(g.subs))
	for i, s := range g.subs {
		names[i] = s.name
	}
	want := names[0]
	if len(names) > 1 {
		want = strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	}
	if len(args) == 0 {
		return usagef("expected a subcommand: %s", want)
	}
	switch args[0] {
	case "-h", "--help", "help":
		g.help(e.stderr, names)
		return nil
	}
	for _, s := range g.subs {
		if s.name == args[0] {
			return s.run(e, args[1:])
		}
	}
	return usagef("unknown subcommand %q (want %s)", args[0], want)
}

func (g group) help(w io.Writer, names []string) {
	fmt.Fprintf(w, "Usage: countersign %s %s [flags] (each takes --help)\n\n", g.name, strings.Join(names, "|"))
	for _, s := range g.subs {
		fmt.Fprintf(w, "  %-9s %s\n", s.name, s.summary)
	}
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table returns a writer of aligned columns that has written the header
// (tab-separated); the caller flushes it.
func table(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

// accountErr turns the errors of the account package into the command's:
// a missing row becomes missing (exit 1), an invalid value a usage error
// (exit 2); others pass unchanged, nil included.
func accountErr(err error, missing string) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errors.New(missing)
	case errors.Is(err, account.ErrInvalid):
		return usageError{err}
	}
	return err
}
