package countersign_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestNothingInsideImportsThePublicAPI holds the one-way dependency: the root
// package wraps the internal ones, so none of them, their tests included,
// may import it (only cmd/countersign and countersigntest, beside it, could).
func TestNothingInsideImportsThePublicAPI(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "./...").CombinedOutput()
	require.NoError(t, err, "%s", out)
	const root = "github.com/countersign/countersign"
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		// countersigntest is public too and sits beside the root package: it
		// takes the Registry authors build.
		if pkg == root || strings.HasPrefix(pkg, root+"/cmd/") || pkg == root+"/countersigntest" {
			continue
		}
		require.NotContains(t, imports, root, "%s imports the public package", pkg)
	}
}
