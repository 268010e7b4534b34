package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/policy"
)

func TestDemoPrintsWhereToSignIn(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testdb.New(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	t.Cleanup(cancel)
	var out, errb bytes.Buffer
	// The demo serves until its context ends; its stdout is read after.
	code := Main(ctx, []string{"demo", "--addr", "127.0.0.1:0", "--every", "1h"}, strings.NewReader(""), &out, &errb,
		func(k string) string { return env[k] })
	require.Equal(t, exitOK, code, errb.String())
	require.Regexp(t, `open http://127\.0\.0\.1:\d+ and sign in as admin@example\.com`, out.String())
	require.NotContains(t, out.String(), "127.0.0.1:0 ", "the port it got, not the one asked for")
	require.Contains(t, out.String(), `password "`+DemoPassword+`"`)
	require.Contains(t, out.String(), "activated the example policy")
}

func TestDemoConsoleURL(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		":8080":          "http://localhost:8080",
		"0.0.0.0:8080":   "http://localhost:8080",
		"[::]:8080":      "http://localhost:8080",
		"127.0.0.1:9000": "http://127.0.0.1:9000",
	} {
		t.Run(addr, func(t *testing.T) {
			a, err := net.ResolveTCPAddr("tcp", addr)
			require.NoError(t, err)
			require.Equal(t, want, consoleURL(config.Config{}, a))
		})
	}
}

func TestDemoKeepsAnAdminsPolicy(t *testing.T) {
	t.Parallel()
	dbURL := testdb.New(t)
	vars := map[string]string{"DATABASE_URL": dbURL}
	var out bytes.Buffer
	seed := func(t *testing.T) string {
		t.Helper()
		out.Reset()
		ev := &env{ctx: context.Background(), stdout: &out, stderr: &out, getenv: func(k string) string { return vars[k] }}
		cfg, err := ev.config("")
		require.NoError(t, err)
		require.NoError(t, seedPolicy(ev, cfg))
		require.Equal(t, 1, strings.Count(out.String(), "\n"), "one line: %s", out.String())
		return out.String()
	}
	active := func(t *testing.T) string {
		t.Helper()
		r := run(t, vars, "policy", "show")
		require.Equal(t, exitOK, r.code, r.stderr)
		return r.stdout
	}

	t.Run("NoPolicyActivatesTheExample", func(t *testing.T) {
		require.Contains(t, seed(t), "activated the example policy as version 1")
	})
	t.Run("TheExampleStays", func(t *testing.T) {
		require.Contains(t, seed(t), "the example policy is active (version 1)")
	})
	t.Run("AnAdminsPolicyIsKept", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "mine.yaml")
		mine := string(policy.Example) + "\n# alice's edit\n"
		require.NoError(t, os.WriteFile(file, []byte(mine), 0o600))
		r := run(t, vars, "policy", "apply", file, "--by", "alice")
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Contains(t, seed(t), "keeping the active policy version 2 (activated by alice)")
		require.Contains(t, active(t), "alice's edit")
	})
}
