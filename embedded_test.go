package countersign_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testdb"
)

// TestEmbeddedExample builds examples/embedded, a module of its own that
// uses only the public API, and drives the binary as its users would: its
// own migrate, user add and token create, then serve, a run of its refund
// workflow started through the API by one user and approved through the API
// by another, until the run completes with the effect's result.
func TestEmbeddedExample(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example module")
	}
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "embedded")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Dir = filepath.Join("examples", "embedded")
	// Offline from the module cache, as CI builds it.
	build.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOPROXY=off")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build the example: %s", out)

	env := append(os.Environ(), "DATABASE_URL="+testdb.New(t), "COUNTERSIGN_ADDR=127.0.0.1:0", "COUNTERSIGN_WORKERS=2")
	cmd := func(args ...string) string {
		t.Helper()
		c := exec.CommandContext(t.Context(), bin, args...)
		c.Env = env
		var stdout, stderr bytes.Buffer
		c.Stdout, c.Stderr = &stdout, &stderr
		require.NoError(t, c.Run(), "embedded %s: %s", strings.Join(args, " "), stderr.String())
		return strings.TrimSpace(stdout.String())
	}
	cmd("migrate")
	cmd("user", "add", "--email", "agent@example.com", "--name", "Agent", "--role", "approver", "--password", "agent-password-1")
	cmd("user", "add", "--email", "rita@example.com", "--name", "Rita", "--role", "reviewer", "--password", "rita-password-1")
	agent := cmd("token", "create", "--email", "agent@example.com", "--scope", "runs:write,runs:read")
	rita := cmd("token", "create", "--email", "rita@example.com", "--scope", "requests:read,decide")

	// The run start help lists the example's workflow, not the demo's.
	help := exec.Command(bin, "run", "start", "--help")
	helpOut, _ := help.CombinedOutput()
	require.Contains(t, string(helpOut), "refund  Refund an order once a reviewer approves it.")
	require.NotContains(t, string(helpOut), "support_triage")

	base := serve(t, bin, env)
	api := func(token, method, path string, body any, want int) map[string]any {
		t.Helper()
		var rd bytes.Buffer
		if body != nil {
			require.NoError(t, json.NewEncoder(&rd).Encode(body))
		}
		req, err := http.NewRequestWithContext(t.Context(), method, base+path, &rd)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var v map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
		require.Equal(t, want, resp.StatusCode, "%s %s: %v", method, path, v)
		return v
	}
	runStatus := func(id string) string { return api(agent, "GET", "/api/v1/runs/"+id, nil, 200)["status"].(string) }

	run := api(agent, "POST", "/api/v1/runs", map[string]any{"workflow": "refund", "business_key": "order-A-1001",
		"input": map[string]any{"order": "A-1001", "amount": 40, "reason": "arrived broken"}}, http.StatusCreated)
	id := run["id"].(string)
	// With no policy activated every action is reviewed explicitly.
	require.Eventually(t, func() bool { return runStatus(id) == "waiting_human" }, 30*time.Second, 100*time.Millisecond)

	pending := api(rita, "GET", "/api/v1/requests?status=pending", nil, 200)["requests"].([]any)
	require.Len(t, pending, 1)
	reqID := pending[0].(map[string]any)["id"].(string)
	request := api(rita, "GET", "/api/v1/requests/"+reqID, nil, 200)
	require.Equal(t, "refund.issue", request["action"].(map[string]any)["kind"])
	// The user who started the run may not approve it.
	api(agent, "POST", "/api/v1/requests/"+reqID+"/decision", map[string]any{"verdict": "approve", "payload_hash": request["payload_hash"]}, http.StatusForbidden)
	decided := api(rita, "POST", "/api/v1/requests/"+reqID+"/decision",
		map[string]any{"verdict": "approve", "payload_hash": request["payload_hash"], "comment": "within the window"}, 200)
	require.Equal(t, "decided", decided["status"])

	require.Eventually(t, func() bool { return runStatus(id) == "completed" }, 30*time.Second, 100*time.Millisecond)
	final := api(agent, "GET", "/api/v1/runs/"+id, nil, 200)
	require.Equal(t, fmt.Sprintf("refunded 40 on order A-1001 (key %s:issue_refund)", id), final["output"])
}

// serve starts the binary's serve on a free port and returns its address; it
// is stopped with SIGTERM, as a service manager stops it, when t ends.
func serve(t *testing.T, bin string, env []string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := exec.CommandContext(ctx, bin, "serve")
	c.Env = env
	c.Cancel = func() error { return c.Process.Signal(syscall.SIGTERM) }
	c.WaitDelay = 20 * time.Second
	var log syncBuffer
	c.Stdout, c.Stderr = &log, &log
	require.NoError(t, c.Start())
	t.Cleanup(func() {
		cancel()
		_ = c.Wait()
		if t.Failed() {
			t.Logf("serve's log:\n%s", log.String())
		}
	})
	started := regexp.MustCompile(`msg="web started" addr=(http://\S+)`)
	var base string
	require.Eventually(t, func() bool {
		m := started.FindStringSubmatch(log.String())
		if m != nil {
			base = m[1]
		}
		return m != nil
	}, 30*time.Second, 50*time.Millisecond, "serve announces its address: %s", log.String())
	return base
}

// syncBuffer is a buffer that a process writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
