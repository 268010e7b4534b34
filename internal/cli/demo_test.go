package cli

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
	// The demo serves until its context ends: it is stopped once it has said
	// where to sign in. Setting up (migrations, five bcrypt hashes) takes
	// seconds under the race detector, so no fixed timeout stops it early.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "--addr", "127.0.0.1:0", "--every", "1h"}, strings.NewReader(""), &out, &errb,
			func(k string) string { return env[k] }, Options{})
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "open http://") },
		60*time.Second, 20*time.Millisecond, "the demo says where to sign in: %s", errb.String())
	// Stopped once it serves what it announced, not in the middle of starting.
	url := regexp.MustCompile(`open (http://\S+)`).FindStringSubmatch(out.String())[1]
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 20*time.Millisecond, "the console answers at %s", url)
	cancel()
	require.Equal(t, exitOK, <-done, errb.String())
	require.Regexp(t, `open http://127\.0\.0\.1:\d+ and sign in as admin@example\.com`, out.String())
	require.NotContains(t, out.String(), "127.0.0.1:0 ", "the port it got, not the one asked for")
	require.Contains(t, out.String(), `password "`+DemoPassword+`"`)
	require.Contains(t, out.String(), "activated the example policy")
}

// syncBuffer is a bytes.Buffer that a running command writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
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
