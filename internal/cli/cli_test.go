package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testdb"
)

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	// As the countersign binary runs it: the run commands know the demo's workflows.
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb, func(k string) string { return env[k] }, Options{Demo: true})
	return result{code, out.String(), errb.String()}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
		want string
	}{
		"BadDatabaseURL": {map[string]string{"DATABASE_URL": "mysql://x"}, []string{"migrate"}, "DATABASE_URL must be a postgres:// URL"},
		"BadAddr":        {map[string]string{"COUNTERSIGN_ADDR": "8080"}, []string{"serve"}, "COUNTERSIGN_ADDR must be host:port"},
		"BadWorkers":     {map[string]string{"COUNTERSIGN_WORKERS": "lots"}, []string{"serve"}, "COUNTERSIGN_WORKERS must be a whole number"},
		"BadProvider":    {map[string]string{"COUNTERSIGN_MODEL_PROVIDER": "magic"}, []string{"serve"}, "COUNTERSIGN_MODEL_PROVIDER must be offline or openai"},
		"OpenAINoModel":  {map[string]string{"COUNTERSIGN_MODEL_PROVIDER": "openai"}, []string{"serve"}, "COUNTERSIGN_MODEL is required"},
		"BadFlag":        {nil, []string{"run", "list", "--nope"}, "flag provided but not defined"},
		"BadStatus":      {nil, []string{"run", "list", "--status", "snoozing"}, `unknown status "snoozing"`},
		"UnknownCommand": {nil, []string{"frobnicate"}, `unknown command "frobnicate"`},
		"BothSides":      {nil, []string{"serve", "--web-only", "--worker-only"}, "exclude each other"},
	} {
		t.Run(name, func(t *testing.T) {
			r := run(t, tc.env, tc.args...)
			require.Equal(t, exitUsage, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.want)
			require.LessOrEqual(t, strings.Count(strings.TrimSpace(r.stderr), "\n"), 12, "a short message, not a dump")
		})
	}
	r := run(t, nil, "--help")
	require.Equal(t, exitOK, r.code)
	for _, c := range []string{"migrate", "serve", "run", "demo", "policy", "audit"} {
		require.Contains(t, r.stdout, c)
	}
}

func TestMigrateConcurrentlyCreatesTheDatabase(t *testing.T) {
	t.Parallel()
	name := fmt.Sprintf("cs_migrate_%d", os.Getpid())
	url := testdb.URLFor(name)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testdb.ServerURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	env := map[string]string{"DATABASE_URL": url}
	var wg sync.WaitGroup
	results := make([]result, 3)
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = run(t, env, "migrate") }()
	}
	wg.Wait()
	for _, r := range results {
		require.Equal(t, exitOK, r.code, r.stderr)
	}
	r := run(t, env, "migrate")
	require.Equal(t, exitOK, r.code, "migrate is idempotent: %s", r.stderr)
}

func TestRunCommands(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testdb.New(t)}

	r := run(t, env, "run", "start", "--workflow", "lead_enrichment", "--key", "L-1",
		"--input", `{"lead_id":"L-1","company":"Initech","email":"a@initech.example","employees":10}`)
	require.Equal(t, exitOK, r.code, r.stderr)
	id := strings.TrimSpace(r.stdout)
	require.Len(t, id, 36)

	r = run(t, env, "run", "start", "--workflow", "lead_enrichment", "--key", "L-1", "--input", `{"lead_id":"L-1"}`)
	require.Equal(t, exitOK, r.code)
	require.Equal(t, id, strings.TrimSpace(r.stdout), "same business key, same run")
	require.Contains(t, r.stderr, "already exists")

	for _, bad := range [][]string{
		{"run", "start", "--workflow", "nope", "--key", "k"},
		{"run", "start", "--workflow", "lead_enrichment", "--key", "k", "--input", `{"lead_id":`},
		{"run", "start", "--workflow", "lead_enrichment", "--key", "k", "--input", `{"colour":"red"}`},
		{"run", "start", "--workflow", "lead_enrichment"},
	} {
		r := run(t, env, bad...)
		require.Equal(t, exitUsage, r.code, "%v: %s", bad, r.stderr)
	}

	r = run(t, env, "run", "show", id)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"status": "queued"`)
	require.Contains(t, r.stdout, `"business_key": "L-1"`)

	r = run(t, env, "run", "list", "--status", "queued")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, id)
	require.Equal(t, 2, strings.Count(r.stdout, "\n"), "one header and one run: bad starts wrote nothing")

	r = run(t, env, "run", "signal", id, "enriched", "--data", `{"score": 3}`, "--key", "cb-1")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"idempotency_key": "cb-1"`)
	first := r.stdout
	r = run(t, env, "run", "signal", id, "enriched", "--data", `{"score": 4}`, "--key", "cb-1")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, first, r.stdout, "a repeat prints the same event")
	require.Contains(t, r.stderr, "already delivered")
	for _, bad := range [][]string{
		{"run", "signal", id, "enriched", "--data", `{"score":`},
		{"run", "signal", id},
		{"run", "signal", "nope", "enriched"},
		{"run", "signal", id, "a/b"},
	} {
		r := run(t, env, bad...)
		require.Equal(t, exitUsage, r.code, "%v: %s", bad, r.stderr)
	}

	r = run(t, env, "run", "cancel", id)
	require.Equal(t, exitOK, r.code, r.stderr)
	r = run(t, env, "run", "signal", id, "enriched", "--key", "cb-2")
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, "already ended")
	r = run(t, env, "run", "cancel", id)
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, "already ended")
	r = run(t, env, "run", "show", "00000000-0000-0000-0000-000000000000")
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, "no run")

	// run.started, run.event_received, run.cancelled
	r = run(t, env, "audit", "verify")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `^ok: 3 events, head [0-9a-f]{64}\n$`, r.stdout)
	r = run(t, env, "audit", "head")
	require.Regexp(t, `^3 [0-9a-f]{64}\n$`, r.stdout)

	r = run(t, env, "audit", "export", "--format", "csv", "--kind", "run.started", "--since", "2000-01-01")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, 2, strings.Count(r.stdout, "\n"), "the header and one event")
	require.Contains(t, r.stderr, "exported 1 events")
	for _, bad := range [][]string{{"--run", "nope"}, {"--verdict", "maybe"}, {"--since", "yesterday"}, {"--format", "xml"}} {
		r = run(t, env, append([]string{"audit", "export"}, bad...)...)
		require.Equal(t, exitUsage, r.code, "%v: %s", bad, r.stderr)
	}
}

func TestPolicyCommands(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testdb.New(t)}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("version: 1\nrules:\n  - name: a\n    when: action.knd == 'x'\n    tier: auto\n"), 0o600))

	r := run(t, env, "policy", "check", "../../policy/example.yaml")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "ok, 7 rules")
	r = run(t, env, "policy", "check", bad)
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, `bad.yaml:line 4: rule "a": when: action has no field "knd"`)

	r = run(t, env, "policy", "show")
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, "no policy has been activated")

	r = run(t, env, "policy", "apply", "../../policy/example.yaml", "--by", "alice")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "activated policy version 1")
	r = run(t, env, "policy", "apply", bad)
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, "nothing was changed")

	r = run(t, env, "policy", "show")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stdout, "# version 1 (active)")
	require.Contains(t, r.stdout, "name: read-only")
	r = run(t, env, "policy", "history")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stdout, "alice")

	r = run(t, env, "audit", "verify")
	require.Contains(t, r.stdout, "ok: 1 events", "the activation is audited")
}

// TestRunStartRefusesInputTheDatabaseCannotStore starts a run whose input is
// valid JSON that jsonb refuses (a lone surrogate), and names runs by
// something that is not an id: each is a usage error in one line, and no run.
func TestRunStartRefusesInputTheDatabaseCannotStore(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testdb.New(t)}
	r := run(t, env, "run", "start", "--workflow", "lead_enrichment", "--key", "L-9",
		"--input", `{"lead_id":"L-9","company":"\ud800","email":"a@initech.example","employees":10}`)
	require.Equal(t, exitUsage, r.code, r.stderr)
	require.Contains(t, r.stderr, "--input cannot be stored")
	require.Equal(t, 1, strings.Count(strings.TrimSpace(r.stderr), "\n")+1, "one line: %q", r.stderr)
	require.Empty(t, r.stdout)

	for _, args := range [][]string{{"run", "show", "nope"}, {"run", "cancel", "nope"}} {
		r = run(t, env, args...)
		require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stderr, "must be a uuid")
	}
	r = run(t, env, "run", "list")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, 1, strings.Count(r.stdout, "\n"), "only the header: nothing was started")
}

// TestRunStartRefusesTheApprovalWorkflow: the approvals API's built-in
// workflow takes no made-up input from the command line (it names the filer
// and the token that signs the callback).
func TestRunStartRefusesTheApprovalWorkflow(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testdb.New(t)}
	r := run(t, env, "run", "start", "--workflow", "countersign.approval", "--key", "forged",
		"--input", `{"action":{"kind":"search","summary":"x"},"idempotency_key":"k","user_id":1,"body_hash":"x"}`)
	require.NotEqual(t, exitOK, r.code, r.stdout)
	require.Contains(t, r.stderr, "started only by its own service")
	r = run(t, env, "run", "list")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, 1, strings.Count(r.stdout, "\n"), "only the header: nothing was started")
}

func TestAuditVerifyAgainstASavedHead(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testdb.New(t)}
	dir := t.TempDir()
	saved := filepath.Join(dir, "head.json")
	apply := func() {
		t.Helper()
		r := run(t, env, "policy", "apply", "../../policy/example.yaml")
		require.Equal(t, exitOK, r.code, r.stderr)
	}
	apply()
	apply()

	r := run(t, env, "audit", "head", "--out", saved)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `^2 [0-9a-f]{64} \(saved to .*head.json\)\n$`, r.stdout)
	b, err := os.ReadFile(saved)
	require.NoError(t, err)
	require.Regexp(t, `^\{"seq":2,"hash":"[0-9a-f]{64}","at":"[^"]+"\}\n$`, string(b))
	line := strings.Fields(r.stdout)
	hash := line[1]
	r = run(t, env, "audit", "head", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"hash":"`+hash+`"`)

	apply() // the chain grows past the saved head
	for _, args := range [][]string{{"--against", saved}, {"--head", hash}, {"--head", "2:" + hash}, {"--head", "2 " + hash}} {
		r = run(t, env, append([]string{"audit", "verify"}, args...)...)
		require.Equal(t, exitOK, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stdout, "ok: 3 events")
		require.Contains(t, r.stdout, "holds the saved head")
	}

	garbage := filepath.Join(dir, "garbage.json")
	require.NoError(t, os.WriteFile(garbage, []byte(`{"seq": "two"}`), 0o600))
	for _, args := range [][]string{
		{"--head", "nothex"},
		{"--head", hash[:10]},
		{"--head", "x:" + hash},
		{"--against", filepath.Join(dir, "missing.json")},
		{"--against", garbage},
		{"--against", saved, "--head", hash},
	} {
		r = run(t, env, append([]string{"audit", "verify"}, args...)...)
		require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stdout)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %s", r.stderr)
	}

	// Cut the tail back to event 1, as someone with the database password
	// and the trigger disabled could: the rest still verifies by itself.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, env["DATABASE_URL"])
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(ctx) })
	_, err = conn.Exec(ctx, `ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_change;
		ALTER TABLE audit_chain DISABLE TRIGGER audit_chain_no_change;
		DELETE FROM audit_events WHERE id IN (SELECT event_id FROM audit_chain WHERE seq > 1);
		DELETE FROM audit_chain WHERE seq > 1;
		ALTER TABLE audit_chain ENABLE TRIGGER audit_chain_no_change;
		ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_change`)
	require.NoError(t, err)
	r = run(t, env, "audit", "verify")
	require.Equal(t, exitOK, r.code, "without the saved head the cut is invisible: %s", r.stderr)
	r = run(t, env, "audit", "verify", "--against", saved)
	require.Equal(t, exitFail, r.code)
	require.Equal(t, "countersign audit: the chain was truncated: the saved head is event 2, but the chain ends at event 1 (1 events verify on their own)\n", r.stderr)
	r = run(t, env, "audit", "verify", "--head", hash)
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, "is not on the chain: it was truncated or rewritten")

	// A new event takes sequence 2 with another hash: a rewritten chain.
	apply()
	r = run(t, env, "audit", "verify")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = run(t, env, "audit", "verify", "--against", saved)
	require.Equal(t, exitFail, r.code)
	require.Regexp(t, `^countersign audit: the chain was rewritten: event 2 has hash [0-9a-f]{64}, the saved head says `+hash+` \(2 events verify on their own\)\n$`, r.stderr)
}

func TestPolicyCheckRefusesTruncatedNumbersAndLimits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ name, src, want string }{
		{"fraction.yaml", "version: 1\nrules:\n  - name: tags\n    when: 'true'\n    tier: batched\n    approvals: 2.9\n",
			`fraction.yaml:line 6: rule "tags": approvals must be a whole number from 1 to 10, got 2.9`},
		{"approve.yaml", "version: 1\nrules:\n  - name: tags\n    when: 'true'\n    tier: batched\n    approvals: 2\n    deadline: 1h\n    on_timeout: approve\n",
			`approve.yaml:line 8: rule "tags": on_timeout: approve cannot be combined with approvals: 2`},
		{"nested.yaml", "version: 1\nrules:\n  - name: n\n    tier: auto\n    when: action.params.l.all(x, action.params.l.all(y, x == y))\n",
			`nested.yaml:line 5: rule "n": when: the condition could cost up to`},
	} {
		path := filepath.Join(dir, tc.name)
		require.NoError(t, os.WriteFile(path, []byte(tc.src), 0o600))
		r := run(t, nil, "policy", "check", path)
		require.Equal(t, exitFail, r.code, tc.name)
		require.Contains(t, r.stderr, tc.want)
		require.Contains(t, r.stderr, "nothing was changed")
	}
}

func TestCommandsOnAnUnmigratedDatabase(t *testing.T) {
	t.Parallel()
	name := "cs_empty_" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "_"))[:20] + fmt.Sprint(os.Getpid())
	admin, err := pgx.Connect(context.Background(), testdb.ServerURL())
	require.NoError(t, err)
	_, err = admin.Exec(context.Background(), "CREATE DATABASE "+name)
	require.NoError(t, err)
	require.NoError(t, admin.Close(context.Background()))
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testdb.ServerURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	env := map[string]string{"DATABASE_URL": testdb.URLFor(name)}
	for _, args := range [][]string{
		{"run", "list"}, {"run", "start", "--workflow", "support_triage", "--key", "k", "--input", "{}"},
		{"user", "list"}, {"token", "list"}, {"policy", "history"}, {"audit", "verify"}, {"serve"},
	} {
		t.Run(strings.Join(args[:min(2, len(args))], "_"), func(t *testing.T) {
			r := run(t, env, args...)
			require.Equal(t, exitUsage, r.code, r.stderr)
			require.Contains(t, r.stderr, "run countersign migrate")
			require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %s", r.stderr)
		})
	}
	t.Run("HelpIsUnaffected", func(t *testing.T) {
		r := run(t, env, "run", "list", "--help")
		require.Equal(t, exitOK, r.code, r.stderr)
	})
	t.Run("NothingWasWritten", func(t *testing.T) {
		c, err := pgx.Connect(context.Background(), env["DATABASE_URL"])
		require.NoError(t, err)
		t.Cleanup(func() { c.Close(context.Background()) })
		var tables int
		require.NoError(t, c.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables))
		require.Zero(t, tables, "checking the schema created nothing, not even goose's version table")
	})
	t.Run("MigrateThenWorks", func(t *testing.T) {
		r := run(t, env, "migrate")
		require.Equal(t, exitOK, r.code, r.stderr)
		r = run(t, env, "run", "list")
		require.Equal(t, exitOK, r.code, r.stderr)
	})
}

func TestConnectionErrorsSayWhatToCheck(t *testing.T) {
	t.Parallel()
	// Port 1 on the loopback: nothing listens there, so the dial is refused at once.
	env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/countersign?sslmode=disable"}
	for _, args := range [][]string{{"run", "list"}, {"migrate"}, {"user", "list"}, {"serve"}} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			r := run(t, env, args...)
			require.Equal(t, exitUsage, r.code, r.stderr)
			require.Contains(t, r.stderr, "127.0.0.1:1")
			require.Contains(t, r.stderr, "check DATABASE_URL")
			require.Contains(t, r.stderr, "PostgreSQL is running")
			require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %s", r.stderr)
		})
	}
}

func TestRunStartWithoutInput(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": testdb.New(t)}

	t.Run("RefusedWhenTheInputHasFields", func(t *testing.T) {
		r := run(t, env, "run", "start", "--workflow", "lead_enrichment", "--key", "L-1")
		require.Equal(t, exitUsage, r.code, r.stderr)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %s", r.stderr)
		require.Contains(t, r.stderr, "--input is required")
		require.Contains(t, r.stderr, "lead_id, company, email, employees", "the fields, the optional industry left out")
		require.NotContains(t, r.stderr, "industry")
	})
	t.Run("StartsWithInput", func(t *testing.T) {
		r := run(t, env, "run", "start", "--workflow", "lead_enrichment", "--key", "L-2", "--input", `{"lead_id":"L-2"}`)
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Len(t, strings.TrimSpace(r.stdout), 36)
	})
	r := run(t, env, "run", "list")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, 2, strings.Count(r.stdout, "\n"), "one header and one run: the refused start wrote nothing")
}
