package audit_test

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
)

// everyDetails holds a value of every details type, in each of the shapes
// that give it another kind.
var everyDetails = []audit.Details{
	audit.RunStarted{}, audit.RunFailed{}, audit.RunFailed{Final: true}, audit.RunRecovered{}, audit.RunCancelled{},
	audit.RunSleeping{}, audit.RunEventWaiting{}, audit.RunWoke{}, audit.RunEventReceived{},
	audit.RunCompensating{}, audit.RunCompensated{}, audit.RunCompensationFailed{}, audit.RunFlaggedUnusable{},
	audit.ApprovalRequested{}, audit.ApprovalVote{}, audit.DecisionAuto{}, audit.DecisionRecorded{},
	audit.BatchDecided{}, audit.RequestEscalated{}, audit.PolicyActivated{}, audit.PolicyPromoted{}, audit.PolicyGrantRevoked{}, audit.UserCreated{},
	audit.UserAccess{}, audit.UserAccess{Disabled: true}, audit.UserRoleChanged{}, audit.TokenCreated{},
	audit.TokenRevoked{}, audit.AuthLogin{}, audit.AuthLoginFailed{}, audit.AuthLoginThrottled{}, audit.AuthLogout{},
	audit.WebhookCreated{}, audit.WebhookDeleted{},
}

// TestKinds holds the list the history filter menu reads against the
// details types: every type's kind is listed, every listed kind has a type,
// and every type with a Kind method is among those checked here.
func TestKinds(t *testing.T) {
	t.Parallel()
	var produced []audit.Kind
	for _, d := range everyDetails {
		require.Contains(t, audit.Kinds, d.Kind(), "%T", d)
		produced = append(produced, d.Kind())
	}
	for _, k := range audit.Kinds {
		require.Contains(t, produced, k, "no details type appends %s", k)
	}
	require.True(t, slices.IsSorted(audit.Kinds))
	require.Len(t, slices.Compact(slices.Clone(audit.Kinds)), len(audit.Kinds))

	checked := map[string]bool{}
	for _, d := range everyDetails {
		checked[reflect.TypeOf(d).Name()] = true
	}
	f, err := parser.ParseFile(token.NewFileSet(), "event.go", nil, 0)
	require.NoError(t, err)
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Recv == nil || fn.Name.Name != "Kind" {
			continue
		}
		recv := fn.Recv.List[0].Type.(*ast.Ident).Name
		require.True(t, checked[recv], "details type %s is missing from everyDetails", recv)
	}
	for _, k := range store.RedactedKinds {
		require.Contains(t, audit.Kinds, audit.Kind(k), "redacted kinds are kinds")
	}
}

// TestEventsAreTyped makes sure that no code appends an event but through
// audit.Append, so that every kind the code emits has its details type and
// is in Kinds. The benchmark measures the raw append on purpose.
func TestEventsAreTyped(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case ".git", "node_modules", filepath.Join("internal", "store"), filepath.Join("internal", "audit"), filepath.Join("internal", "bench"):
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		require.NotContains(t, string(src), "store.AuditAppend(", "%s appends an untyped event: use audit.Append", rel)
		return nil
	})
	require.NoError(t, err)
}

func keys(t *testing.T, d audit.Details) []string {
	t.Helper()
	raw, err := json.Marshal(d)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestDetailsJSON pins the field names: the exported log, the chain's hashes
// and the history's filters and summary (which read verdict, workflow, rule,
// tier and seconds_to_decision) depend on them.
func TestDetailsJSON(t *testing.T) {
	t.Parallel()
	t.Run("Decision", func(t *testing.T) {
		require.Equal(t, []string{"action_kind", "batch_decision_id", "comment", "payload_hash", "policy_version", "reason",
			"rule", "seconds_to_decision", "tier", "verdict", "workflow"}, keys(t, audit.DecisionRecorded{Facets: audit.Facets{Verdict: "reject"}}))
		edit := audit.DecisionRecorded{Diff: []string{}, Edited: &audit.Edited{}, Approvers: []string{}}
		require.Subset(t, keys(t, edit), []string{"diff", "edited_rule", "edited_tier", "edited_policy_version",
			"edited_payload_hash", "approvers"})
		require.Subset(t, keys(t, audit.DecisionAuto{Facets: audit.Facets{Verdict: "approve"}}), []string{"verdict", "workflow", "rule", "tier", "summary"})
		for _, d := range []audit.Details{audit.ApprovalRequested{}, audit.BatchDecided{}, audit.RequestEscalated{}} {
			require.Subset(t, keys(t, d), []string{"workflow", "rule", "tier"}, "%T", d)
			require.NotContains(t, keys(t, d), "verdict", "%T: only decisions have a verdict", d)
		}
	})
	t.Run("RunFailed", func(t *testing.T) {
		require.Equal(t, []string{"attempt", "code", "message", "step"}, keys(t, audit.RunFailed{Attempt: &audit.Attempt{}}))
		require.Equal(t, []string{"cause", "code", "message", "recoveries"}, keys(t, audit.RunFailed{Recovery: &audit.Recovery{}, Final: true}))
	})
	t.Run("Others", func(t *testing.T) {
		require.Equal(t, []string{"email"}, keys(t, audit.UserAccess{Disabled: true}))
		require.Equal(t, []string{"sha256", "version"}, keys(t, audit.PolicyActivated{}))
		require.Equal(t, []string{"complete", "count", "ip", "window_end", "window_start"}, keys(t, audit.AuthLoginThrottled{}))
	})
}
