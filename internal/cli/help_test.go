package cli

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// groupUsage is the first line of a group's --help: the subcommands it lists.
var groupUsage = regexp.MustCompile(`^Usage: countersign ([a-z]+) ([a-z|]+) \[flags\] \(each takes --help\)\n`)

// TestHelpOnEveryCommand walks the command line as its help describes it:
// every command, every group and every subcommand a group lists answers -h
// and --help with its usage on stderr and exit 0, without a database (the
// URL points nowhere).
func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/nowhere"}
	help := func(t *testing.T, want string, args ...string) string {
		t.Helper()
		for _, flag := range []string{"--help", "-h"} {
			r := run(t, env, append(args, flag)...)
			require.Equal(t, exitOK, r.code, "%v %s: %s", args, flag, r.stderr)
			require.Contains(t, r.stderr, "Usage: countersign "+want, "%v %s", args, flag)
			require.Empty(t, r.stdout, "%v %s", args, flag)
		}
		return run(t, env, append(args, "--help")...).stderr
	}
	var groups []string
	for name := range commands {
		out := help(t, name, name)
		m := groupUsage.FindStringSubmatch(out)
		if m == nil {
			continue
		}
		groups = append(groups, name)
		require.Equal(t, name, m[1])
		for _, sub := range strings.Split(m[2], "|") {
			require.Contains(t, out, "  "+sub+" ", "the group's help describes %s", sub)
			help(t, name+" "+sub, name, sub)
			// Flags may follow positional arguments, --help too.
			help(t, name+" "+sub, name, sub, "ARG")
		}
	}
	sort.Strings(groups)
	require.Equal(t, []string{"audit", "policy", "receipt", "run", "token", "user"}, groups)
}

// TestGroupRefusesMissingAndUnknownSubcommands checks that every group
// answers a missing or unknown subcommand with one line naming the ones it
// has, and exit 2.
func TestGroupRefusesMissingAndUnknownSubcommands(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"run":     "start, show, list, cancel or signal",
		"policy":  "check, apply, show, history or simulate",
		"audit":   "verify, head or export",
		"user":    "add, list, role, disable or enable",
		"token":   "create, list or revoke",
		"receipt": "verify or keys",
	} {
		r := run(t, nil, name)
		require.Equal(t, exitUsage, r.code, name)
		require.Equal(t, "countersign "+name+": expected a subcommand: "+want+"\n", r.stderr)
		r = run(t, nil, name, "frobnicate")
		require.Equal(t, exitUsage, r.code, name)
		require.Equal(t, "countersign "+name+`: unknown subcommand "frobnicate" (want `+want+")\n", r.stderr)
	}
}
