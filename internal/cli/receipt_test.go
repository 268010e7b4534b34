package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// TestReceiptCommands checks receipt keys and receipt verify with the
// receipt of a request decided by a reviewer in a running process.
func TestReceiptCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testapp.Start(t, testapp.Options{Web: true, Register: func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "refund", func(ctx context.Context, amount float64) (workflow.Decision, error) {
			return workflow.RequestApproval(ctx, workflow.Action{Kind: "refund", Target: "order 7", Summary: "Refund",
				Params: map[string]any{"amount": amount}})
		})
	}})
	_, err := policystore.Apply(ctx, b.Pool, []byte("version: 1\nrules:\n  - name: refunds\n    when: action.kind == \"refund\"\n    tier: explicit\n"), "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	wfRun, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "refund", BusinessKey: "r1", Input: []byte("42.5"), StartedBy: "agent@example.com"})
	require.NoError(t, err)
	b.WaitRun(t, wfRun.ID, vocab.RunWaitingHuman)
	req := b.PendingRequest(t, wfRun.ID)
	_, err = b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: workflow.Actor{Name: "bob@example.com",
		Roles: []vocab.Role{vocab.RoleReviewer}}, Verdict: vocab.VerdictApprove, PayloadHash: req.PayloadHash})
	require.NoError(t, err)
	rec, err := b.App.Receipts.ForRequest(ctx, "", req.ID)
	require.NoError(t, err)
	require.NotNil(t, rec)

	dir := t.TempDir()
	write := func(name string, v any) string {
		raw, err := json.Marshal(v)
		require.NoError(t, err)
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, raw, 0o600))
		return p
	}
	env := map[string]string{"DATABASE_URL": b.URL}

	r := run(t, env, "receipt", "keys")
	require.Equal(t, exitOK, r.code, r.stderr)
	var keys receipt.KeySet
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &keys))
	require.Len(t, keys.Keys, 1)
	require.Equal(t, rec.KeyID, keys.Keys[0].KeyID)
	keysFile := filepath.Join(dir, "keys.json")
	require.NoError(t, os.WriteFile(keysFile, []byte(r.stdout), 0o600))
	good := write("receipt.json", rec)

	t.Run("Valid", func(t *testing.T) {
		r := run(t, nil, "receipt", "verify", "--keys", keysFile, good)
		require.Equal(t, exitOK, r.code, r.stderr)
		require.True(t, strings.HasSuffix(r.stdout, "\nvalid\n"), r.stdout)
		require.Contains(t, r.stdout, `"request_id": "`+req.ID+`"`)
		require.Contains(t, r.stdout, `"amount": 42.5`)

		// Against the server's published keys, from an env URL.
		r = run(t, map[string]string{"COUNTERSIGN_URL": b.Addr}, "receipt", "verify", good)
		require.Equal(t, exitOK, r.code, r.stderr)
		r = run(t, nil, "receipt", "verify", "--url", b.Addr+"/", good)
		require.Equal(t, exitOK, r.code, r.stderr)

		// An Approval holding the receipt, on stdin.
		approval, _ := json.Marshal(map[string]any{"id": wfRun.ID, "status": "approved", "receipt": rec})
		var out, errb bytes.Buffer
		code := Main(ctx, []string{"receipt", "verify", "--keys", keysFile, "-"}, bytes.NewReader(approval), &out, &errb, func(string) string { return "" }, Options{Demo: true})
		require.Equal(t, exitOK, code, errb.String())
		require.Contains(t, out.String(), "valid")
	})

	t.Run("Invalid", func(t *testing.T) {
		tampered := *rec
		c := tampered.Claims
		c.Params = map[string]any{"amount": 4250}
		raw, _ := json.Marshal(c)
		tampered.Payload = strings.TrimRight(b64(raw), "=")
		otherKeys := write("other-keys.json", receipt.KeySet{Keys: []receipt.PublicKey{}})
		for name, args := range map[string][]string{
			"TamperedPayload": {"--keys", keysFile, write("tampered.json", tampered)},
			"UnknownKey":      {"--keys", otherKeys, good},
			"NoReceipt":       {"--keys", keysFile, write("pending.json", map[string]any{"id": wfRun.ID, "status": "pending"})},
			"NotJSON":         {"--keys", keysFile, write("junk.json", "junk")},
		} {
			t.Run(name, func(t *testing.T) {
				r := run(t, nil, append([]string{"receipt", "verify"}, args...)...)
				require.Equal(t, exitFail, r.code, r.stderr)
				require.Empty(t, r.stdout)
				require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
				require.Contains(t, r.stderr, "invalid")
			})
		}
	})

	t.Run("Usage", func(t *testing.T) {
		for name, args := range map[string][]string{
			"NoKeys":         {good},
			"BothKeySources": {"--keys", keysFile, "--url", b.Addr, good},
			"MissingFile":    {"--keys", keysFile, filepath.Join(dir, "nope.json")},
			"MissingKeys":    {"--keys", filepath.Join(dir, "nope.json"), good},
			"TwoFiles":       {"--keys", keysFile, good, good},
			"BadURL":         {"--url", "ftp://example.com", good},
			"Unreachable":    {"--url", "http://127.0.0.1:1", good},
			"UnknownFlag":    {"--frob", good},
		} {
			t.Run(name, func(t *testing.T) {
				r := run(t, nil, append([]string{"receipt", "verify"}, args...)...)
				require.Equal(t, exitUsage, r.code, "%s", r.stderr)
				require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
			})
		}
		r := run(t, env, "receipt", "keys", "extra")
		require.Equal(t, exitUsage, r.code)
		r = run(t, map[string]string{"DATABASE_URL": b.URL, "COUNTERSIGN_RECEIPT_KEY": filepath.Join(dir, "nope.pem")}, "receipt", "keys")
		require.Equal(t, exitUsage, r.code, r.stderr)
		require.Contains(t, r.stderr, "COUNTERSIGN_RECEIPT_KEY")
	})
}

func b64(raw []byte) string { return base64.RawURLEncoding.EncodeToString(raw) }
