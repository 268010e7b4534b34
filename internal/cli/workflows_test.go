package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
)

type greeting struct {
	Name string `json:"name"`
}

// TestBinaryWorkflows checks that a binary's own workflows (what
// countersign.Main passes) are the ones the run commands start and run start
// --help lists, and that the demo's are not there unless the binary asks.
func TestBinaryWorkflows(t *testing.T) {
	t.Parallel()
	reg := workflow.NewRegistry()
	workflow.Register(reg, "greet", func(_ context.Context, g greeting) (string, error) { return "hello " + g.Name, nil },
		workflow.Options{Description: "Say hello.", Example: greeting{Name: "Ada"}})
	env := map[string]string{"DATABASE_URL": testdb.New(t)}
	runWith := func(opts Options, args ...string) result {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] }, opts)
		return result{code, out.String(), errb.String()}
	}

	t.Run("HelpListsThem", func(t *testing.T) {
		r := runWith(Options{Workflows: reg}, "run", "start", "--help")
		require.Equal(t, exitOK, r.code)
		require.Contains(t, r.stderr, "Workflows:\n  greet  Say hello.\n      --input '{\"name\":\"Ada\"}'\n")
		require.NotContains(t, r.stderr, "support_triage")

		r = runWith(Options{}, "run", "start", "--help")
		require.Contains(t, r.stderr, "This binary registers no workflows.")

		r = runWith(Options{Workflows: reg, Demo: true}, "run", "start", "--help")
		require.Contains(t, r.stderr, "  greet  Say hello.")
		require.Contains(t, r.stderr, "  support_triage  ")
	})

	t.Run("RunStartStartsThem", func(t *testing.T) {
		r := runWith(Options{Workflows: reg}, "run", "start", "--workflow", "greet", "--key", "g-1", "--input", `{"name":"Ada"}`)
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Len(t, strings.TrimSpace(r.stdout), 36)

		r = runWith(Options{Workflows: reg}, "run", "start", "--workflow", "greet", "--key", "g-2")
		require.Equal(t, exitUsage, r.code)
		require.Contains(t, r.stderr, "--input is required: greet needs name")

		r = runWith(Options{Workflows: reg}, "run", "start", "--workflow", "support_triage", "--key", "t-1", "--input", `{}`)
		require.Equal(t, exitUsage, r.code, "the demo's workflows are not this binary's")
		require.Contains(t, r.stderr, "unknown workflow")
	})
}
