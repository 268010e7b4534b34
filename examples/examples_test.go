package examples_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testapp"
)

// need returns the path of a program the test runs, and skips the test when
// it is missing here; in CI (CI=true) a missing program fails instead, since
// .ci/run installs them.
func need(t *testing.T, program string) string {
	t.Helper()
	path, err := exec.LookPath(program)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing: .ci/run must install it", program)
		}
		t.Skipf("%s is not installed: the example that needs it is not tested here", program)
	}
	return path
}

// proc is a finished subprocess.
type proc struct {
	code           int
	stdout, stderr string
}

// start runs a command in the background with the server's address and the
// agent's token in its environment.
func start(t *testing.T, app *testapp.Agents, env []string, stdin, name string, args ...string) <-chan proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), "COUNTERSIGN_URL="+app.Addr, "COUNTERSIGN_TOKEN="+app.AgentToken), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	done := make(chan proc, 1)
	go func() {
		defer cancel()
		_ = cmd.Wait()
		done <- proc{cmd.ProcessState.ExitCode(), out.String(), errb.String()}
	}()
	return done
}

// run runs a command to its end.
func run(t *testing.T, app *testapp.Agents, env []string, stdin, name string, args ...string) proc {
	t.Helper()
	return <-start(t, app, env, stdin, name, args...)
}

// decideWhile runs a command that waits for a decision, decides the one
// pending request as a reviewer through the API, and returns how the
// command ended.
func decideWhile(t *testing.T, app *testapp.Agents, verdict, reason, summary string, env []string, stdin, name string, args ...string) proc {
	t.Helper()
	done := start(t, app, env, stdin, name, args...)
	p := app.WaitPending(t)
	require.Equal(t, summary, p.Summary)
	app.Decide(t, p, verdict, reason, nil)
	select {
	case r := <-done:
		return r
	case <-time.After(time.Minute):
		t.Fatalf("%s did not end after the decision", name)
		return proc{}
	}
}

func action(summary string) string {
	return fmt.Sprintf(`{"kind": "email.send", "summary": %q, "target": "ada@example.com",
		"params": {"to": "ada@example.com", "subject": "Your refund"}}`, summary)
}

// sign signs a callback body as the contract says: t=<unix>,v1=<hex HMAC>.
func sign(secret string, at time.Time, body string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%d.%s", at.Unix(), body)
	return fmt.Sprintf("t=%d,v1=%s", at.Unix(), hex.EncodeToString(mac.Sum(nil)))
}

// checkVerifier runs a callback signature checker (python or node) on a
// body signed as the server signs it, then on a tampered body, an old
// signature and a wrong secret.
func checkVerifier(t *testing.T, app *testapp.Agents, name string, args ...string) {
	t.Helper()
	body := `{"id":"0193","status":"approved"}`
	env := []string{"COUNTERSIGN_CALLBACK_SECRET=whsec_test"}
	now := time.Now()
	r := run(t, app, env, body, name, append(args, sign("whsec_test", now, body))...)
	require.Equal(t, 0, r.code, r.stderr)
	require.Equal(t, "valid\n", r.stdout)
	for what, header := range map[string]string{
		"tampered":     sign("whsec_test", now, body+" "),
		"old":          sign("whsec_test", now.Add(-time.Hour), body),
		"wrong secret": sign("other", now, body),
		"no signature": "t=1",
	} {
		r := run(t, app, env, body, name, append(args, header)...)
		require.Equal(t, 1, r.code, "%s: %s", what, r.stderr)
	}
}

// TestPython runs examples/python against a live server.
func TestPython(t *testing.T) {
	t.Parallel()
	python := need(t, "python3")
	app := testapp.StartAgents(t)

	t.Run("Approved", func(t *testing.T) {
		r := decideWhile(t, app, "approve", "", "Python: email Ada", nil, action("Python: email Ada"),
			python, "python/ask.py", "--timeout", "60")
		require.Equal(t, 0, r.code, r.stderr)
		require.Regexp(t, `^approval [0-9a-f-]{36} pending\n`, r.stdout)
		require.Contains(t, r.stdout, `"status": "approved"`)
		require.Contains(t, r.stdout, `"subject": "Your refund"`)
	})
	t.Run("Rejected", func(t *testing.T) {
		r := decideWhile(t, app, "reject", "wrong customer", "Python: email Bob", nil, action("Python: email Bob"),
			python, "python/ask.py", "--timeout", "60")
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stdout, `"reason": "wrong customer"`)
	})
	t.Run("Pending", func(t *testing.T) {
		r := run(t, app, nil, action("Python: wait"), python, "python/ask.py", "--timeout", "1", "--key", "py-pending")
		require.Equal(t, 3, r.code, r.stderr)
		app.Decide(t, app.WaitPending(t), "reject", "cleanup", nil)
	})
	t.Run("BadToken", func(t *testing.T) {
		r := run(t, app, []string{"COUNTERSIGN_TOKEN=cs_nope"}, action("x"), python, "python/ask.py")
		require.Equal(t, 2, r.code)
		require.Contains(t, r.stderr, "countersign answered 401")
	})
	t.Run("VerifyCallback", func(t *testing.T) {
		checkVerifier(t, app, python, "python/verify_callback.py")
	})
}

// TestTypeScript compiles examples/typescript with its pinned typescript
// and runs it with the machine's node against a live server.
func TestTypeScript(t *testing.T) {
	t.Parallel()
	node := need(t, "node")
	if _, err := os.Stat("typescript/node_modules/typescript"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("examples/typescript/node_modules is missing: .ci/run must run npm ci there")
		}
		t.Skip("run npm ci in examples/typescript to test the TypeScript example")
	}
	build := exec.Command(node, "typescript/node_modules/typescript/bin/tsc", "-p", "typescript")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "tsc: %s", out)
	app := testapp.StartAgents(t)

	t.Run("Approved", func(t *testing.T) {
		r := decideWhile(t, app, "approve", "", "TypeScript: email Ada", nil, action("TypeScript: email Ada"),
			node, "typescript/dist/ask.js", "--timeout", "60")
		require.Equal(t, 0, r.code, r.stderr)
		require.Regexp(t, `^approval [0-9a-f-]{36} pending\n`, r.stdout)
		require.Contains(t, r.stdout, `"status": "approved"`)
		require.Contains(t, r.stdout, `"subject": "Your refund"`)
	})
	t.Run("Rejected", func(t *testing.T) {
		r := decideWhile(t, app, "reject", "wrong customer", "TypeScript: email Bob", nil, action("TypeScript: email Bob"),
			node, "typescript/dist/ask.js", "--timeout", "60")
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stdout, `"reason": "wrong customer"`)
	})
	t.Run("BadToken", func(t *testing.T) {
		r := run(t, app, []string{"COUNTERSIGN_TOKEN=cs_nope"}, action("x"), node, "typescript/dist/ask.js")
		require.Equal(t, 2, r.code)
		require.Contains(t, r.stderr, "countersign answered 401")
	})
	t.Run("VerifyCallback", func(t *testing.T) {
		checkVerifier(t, app, node, "typescript/dist/verify-callback.js")
	})
}

// buildCountersign builds the command the hooks call into a directory that
// the hooks' PATH starts with.
func buildCountersign(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "countersign"), "../cmd/countersign").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return "PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")
}

// TestHooks runs examples/hooks against a live server with the real
// countersign command: a coding agent's pre-tool hook and a git pre-push hook.
func TestHooks(t *testing.T) {
	t.Parallel()
	sh, _ := need(t, "sh"), need(t, "jq")
	app := testapp.StartAgents(t)
	path := buildCountersign(t)
	toolCall := func(command, id string) string {
		return fmt.Sprintf(`{"session_id": "s1", "tool_use_id": %q, "cwd": "/repo", "hook_event_name": "PreToolUse",
			"tool_name": "Bash", "tool_input": {"command": %q}}`, id, command)
	}

	t.Run("PreToolApproved", func(t *testing.T) {
		r := decideWhile(t, app, "approve", "", "Run: make deploy", []string{path}, toolCall("make deploy", "toolu_1"),
			sh, "hooks/pretool.sh")
		require.Equal(t, 0, r.code, r.stderr)
	})
	t.Run("PreToolRejected", func(t *testing.T) {
		r := decideWhile(t, app, "reject", "not on a Friday", "Run: rm -rf build", []string{path}, toolCall("rm -rf build", "toolu_2"),
			sh, "hooks/pretool.sh")
		require.Equal(t, 2, r.code, "exit 2 is what blocks a tool call")
		require.Contains(t, r.stderr, "not on a Friday")
		require.Contains(t, r.stderr, "A reviewer refused this tool call")
	})
	t.Run("PreToolSameCallAsksOnce", func(t *testing.T) {
		// Run again for the approved call (same tool_use_id): no new request.
		r := run(t, app, []string{path}, toolCall("make deploy", "toolu_1"), sh, "hooks/pretool.sh")
		require.Equal(t, 0, r.code, r.stderr)
	})
	t.Run("PreToolNotJSON", func(t *testing.T) {
		r := run(t, app, []string{path}, "nope", sh, "hooks/pretool.sh")
		require.Equal(t, 2, r.code, r.stderr)
	})
	t.Run("PreToolNoServer", func(t *testing.T) {
		r := run(t, app, []string{path, "COUNTERSIGN_URL=http://127.0.0.1:1"}, toolCall("ls", "toolu_3"), sh, "hooks/pretool.sh")
		require.Equal(t, 2, r.code, "fails closed")
		require.Contains(t, r.stderr, "Countersign could not be asked (exit 2)")
	})

	sha := strings.Repeat("ab", 20)
	push := func(ref string) string {
		return fmt.Sprintf("refs/heads/x %s %s %s\n", sha, ref, strings.Repeat("0", 40))
	}
	t.Run("PrePushOtherBranch", func(t *testing.T) {
		r := run(t, app, []string{path}, push("refs/heads/feature"), sh, "hooks/pre-push", "origin", "git@example.com:repo.git")
		require.Equal(t, 0, r.code, r.stderr)
	})
	t.Run("PrePushMainApproved", func(t *testing.T) {
		r := decideWhile(t, app, "approve", "", "Push "+sha+" to refs/heads/main on origin", []string{path}, push("refs/heads/main"),
			sh, "hooks/pre-push", "origin", "git@example.com:repo.git")
		require.Equal(t, 0, r.code, r.stderr)
	})
	t.Run("PrePushMainRejected", func(t *testing.T) {
		r := decideWhile(t, app, "reject", "freeze", "Push "+sha+" to refs/heads/master on origin", []string{path}, push("refs/heads/master"),
			sh, "hooks/pre-push", "origin", "git@example.com:repo.git")
		require.Equal(t, 1, r.code, r.stderr)
		require.Contains(t, r.stderr, "was not approved")
	})
}
