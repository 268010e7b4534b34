package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testapp"
)

// runIn is run with stdin.
func runIn(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(stdin), &out, &errb, func(k string) string { return env[k] }, Options{Demo: true})
	return result{code, out.String(), errb.String()}
}

// approvalOut is the part of ask's output the tests read.
type approvalOut struct {
	ID      string `json:"id"`
	Status  string `json:"status"`
	Tier    string `json:"tier"`
	Outcome *struct {
		Verdict   string         `json:"verdict"`
		Params    map[string]any `json:"params"`
		Reason    string         `json:"reason"`
		DecidedBy string         `json:"decided_by"`
		Rule      string         `json:"rule"`
	} `json:"outcome"`
}

func decodeApproval(t *testing.T, stdout string) approvalOut {
	t.Helper()
	var a approvalOut
	require.NoError(t, json.Unmarshal([]byte(stdout), &a), stdout)
	return a
}

// TestAsk runs `countersign ask` against a live server: the exit code tells
// approved (0), refused (1), still pending (3) and errors (2).
func TestAsk(t *testing.T) {
	t.Parallel()
	app := testapp.StartAgents(t)
	env := map[string]string{"COUNTERSIGN_URL": app.Addr, "COUNTERSIGN_TOKEN": app.AgentToken}
	email := func(subject string) string {
		return `{"kind": "email.send", "summary": "Email Ada: ` + subject + `", "target": "ada@example.com",
			"params": {"to": "ada@example.com", "subject": "` + subject + `"}}`
	}
	// ask waits in the background while a reviewer decides through the API,
	// once ask has said it waits: a decision that came sooner would be in
	// the POST's own answer, and ask would not wait at all.
	askWhile := func(t *testing.T, stdin string, decide func(testapp.PendingRequest), args ...string) result {
		t.Helper()
		done := make(chan result, 1)
		var out bytes.Buffer
		var errb syncBuffer
		go func() {
			code := Main(context.Background(), append([]string{"ask"}, args...), strings.NewReader(stdin), &out, &errb,
				func(k string) string { return env[k] }, Options{Demo: true})
			done <- result{code, out.String(), errb.String()}
		}()
		p := app.WaitPending(t)
		require.Eventually(t, func() bool { return strings.Contains(errb.String(), " is pending (") }, 20*time.Second, 10*time.Millisecond,
			"ask says it waits")
		decide(p)
		return <-done
	}

	// Subtests run one after another: each waits for the one pending request.
	t.Run("Approved", func(t *testing.T) {
		r := askWhile(t, email("approved"), func(p testapp.PendingRequest) {
			require.Equal(t, "Email Ada: approved", p.Summary)
			app.Decide(t, p, "approve", "", nil)
		}, "--timeout", "30s", "--context", "agent=test")
		require.Equal(t, exitOK, r.code, r.stderr)
		a := decodeApproval(t, r.stdout)
		require.Equal(t, "approved", a.Status)
		require.Equal(t, map[string]any{"to": "ada@example.com", "subject": "approved"}, a.Outcome.Params)
		require.Contains(t, r.stderr, "approval "+a.ID+" is pending (explicit tier)")
	})
	t.Run("Rejected", func(t *testing.T) {
		r := askWhile(t, email("rejected"), func(p testapp.PendingRequest) {
			app.Decide(t, p, "reject", "not to customers today", nil)
		}, "--timeout", "30s")
		require.Equal(t, exitFail, r.code, r.stderr)
		a := decodeApproval(t, r.stdout)
		require.Equal(t, "rejected", a.Status)
		require.Contains(t, r.stderr, "approval "+a.ID+" is rejected by approver@example.com: not to customers today\n")
	})
	t.Run("StillPending", func(t *testing.T) {
		r := runIn(t, env, email("pending"), "ask", "--timeout", "1s", "--key", "pending-1")
		require.Equal(t, exitPending, r.code, r.stderr)
		a := decodeApproval(t, r.stdout)
		require.Equal(t, "pending", a.Status)
		require.Contains(t, r.stderr, "approval "+a.ID+" is still pending\n")

		// The same key picks the same approval up again, here once decided.
		p := app.WaitPending(t)
		app.Decide(t, p, "approve", "", nil)
		r = runIn(t, env, email("pending"), "ask", "--timeout", "10s", "--key", "pending-1")
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Equal(t, a.ID, decodeApproval(t, r.stdout).ID)
	})
	t.Run("AutoFromFlags", func(t *testing.T) {
		r := runIn(t, env, "", "ask", "--kind", "read", "--summary", "Read order 1042",
			"--param", "order:=1042", "--param", "sha=0123456789")
		require.Equal(t, exitOK, r.code, r.stderr)
		a := decodeApproval(t, r.stdout)
		require.Equal(t, "auto", a.Tier)
		require.Equal(t, "read-only", a.Outcome.Rule)
		require.Equal(t, map[string]any{"order": float64(1042), "sha": "0123456789"}, a.Outcome.Params,
			"k:=JSON is JSON, k=v always a string")
		require.Empty(t, r.stderr)
	})
	t.Run("Errors", func(t *testing.T) {
		for name, tc := range map[string]struct {
			env   map[string]string
			stdin string
			args  []string
			want  string
		}{
			"NotJSON":      {env, "refund everything", nil, "the action on stdin is not a JSON object"},
			"NoAction":     {env, "", nil, "no action: pipe its JSON on stdin or give --kind and --summary"},
			"KindNoSumm":   {env, "", []string{"--kind", "read"}, "--kind and --summary are both needed"},
			"BadParam":     {env, "", []string{"--kind", "read", "--summary", "s", "--param", "n:=nope"}, "n:= wants a JSON value"},
			"NoURL":        {map[string]string{"COUNTERSIGN_TOKEN": "x"}, email("x"), nil, "give --url or set COUNTERSIGN_URL"},
			"NoToken":      {map[string]string{"COUNTERSIGN_URL": app.Addr}, email("x"), nil, "give --token or set COUNTERSIGN_TOKEN"},
			"BadToken":     {map[string]string{"COUNTERSIGN_URL": app.Addr, "COUNTERSIGN_TOKEN": "cs_nope"}, email("x"), nil, "the server answered 401"},
			"WrongScope":   {map[string]string{"COUNTERSIGN_URL": app.Addr, "COUNTERSIGN_TOKEN": app.ReadOnlyToken}, email("x"), nil, "the server answered 403"},
			"BadAction":    {env, `{"kind": "read", "summary": "s", "risk": "extreme"}`, nil, "risk must be low, medium or high"},
			"Unreachable":  {map[string]string{"COUNTERSIGN_URL": "http://127.0.0.1:1", "COUNTERSIGN_TOKEN": "x"}, email("x"), nil, "cannot reach the server"},
			"NegativeWait": {env, email("x"), []string{"--timeout", "-1s"}, "--timeout must not be negative"},
		} {
			t.Run(name, func(t *testing.T) {
				r := runIn(t, tc.env, tc.stdin, append([]string{"ask"}, tc.args...)...)
				require.Equal(t, exitUsage, r.code, r.stderr)
				require.Contains(t, r.stderr, tc.want)
				require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
				require.Empty(t, r.stdout)
			})
		}
	})
}
