package cli

import (
	"encoding/json"
	"os/exec"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/bench"
)

// TestBenchReportsEncodeAsJSON encodes the reports of every suite, as
// bench --json does: the recovery options' worker command, a function,
// must not make the encoding fail.
func TestBenchReportsEncodeAsJSON(t *testing.T) {
	t.Parallel()
	rep := &bench.RecoveryReport{Orphaned: 3, Options: bench.RecoveryOptions{Runs: 200, Workers: 20,
		Worker: func(string) *exec.Cmd { return nil }}}
	b, err := json.Marshal(benchReports{Engine: &bench.Report{}, Recovery: newRecoveryReport(rep)})
	require.NoError(t, err)
	var got map[string]map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	require.Equal(t, []string{"approvals", "audit", "batch", "console", "engine", "metrics", "notice", "recovery", "traces", "webhook"}, sortedKeys(got))
	require.Nil(t, got["audit"])
	require.EqualValues(t, 3, got["recovery"]["Orphaned"])
	require.Equal(t, map[string]any{"Runs": 200.0, "Workers": 20.0}, got["recovery"]["Options"])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
