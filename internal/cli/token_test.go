package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/testdb"
)

func TestTokenCommands(t *testing.T) {
	t.Parallel()
	url := testdb.New(t)
	env := map[string]string{"DATABASE_URL": url}
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	r := run(t, env, "user", "add", "--email", "bot@example.com", "--name", "Bot", "--role", "approver", "--password", "long-enough-pw")
	require.Equal(t, exitOK, r.code, r.stderr)

	r = run(t, env, "token", "create", "--email", "bot@example.com", "--name", "triage", "--scope", "decide",
		"--scope", "requests:read", "--expires", "720h")
	require.Equal(t, exitOK, r.code, r.stderr)
	m := regexp.MustCompile(`^(cs_[0-9a-f]{8})_[0-9a-f]{64}\n$`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, "only the secret on stdout: %q", r.stdout)
	secret, id := strings.TrimSpace(r.stdout), m[1]
	require.Contains(t, r.stderr, "token "+id+" for bot@example.com (requests:read, decide; expires ")
	require.Regexp(t, `callback secret \(signs this token's callbacks; shown once\): [0-9a-f]{64}\n`, r.stderr)
	_, tok, err := account.TokenUser(context.Background(), pool, secret, time.Now())
	require.NoError(t, err)
	require.Equal(t, []string{"requests:read", "decide"}, tok.Scopes)
	require.WithinDuration(t, time.Now().Add(720*time.Hour), *tok.ExpiresAt, time.Minute)

	r = run(t, env, "token", "create", "--email", "bot@example.com", "--scope", "runs:write,runs:read")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stderr, "(runs:read, runs:write; expires ", "90 days unless told")
	r = run(t, env, "token", "create", "--email", "bot@example.com", "--scope", "audit:read", "--expires", "never")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stderr, "never expires")

	for _, bad := range [][]string{
		{"token", "create", "--email", "bot@example.com"},
		{"token", "create", "--email", "bot@example.com", "--scope", "admin"},
		{"token", "create", "--email", "bot@example.com", "--scope", "decide", "--expires", "-1h"},
		{"token", "create", "--email", "bot@example.com", "--scope", "decide", "--expires", "soon"},
		{"token", "create", "--email", "bot@example.com", "--scope", "decide", "--name", strings.Repeat("n", 101)},
		{"token", "create", "--scope", "decide"},
		{"token", "revoke", "nope"},
		{"token", "revoke"},
		{"token", "frobnicate"},
		{"token"},
	} {
		r := run(t, env, bad...)
		require.Equal(t, exitUsage, r.code, "%v: %s", bad, r.stderr)
		require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	}
	r = run(t, env, "token", "create", "--email", "nobody@example.com", "--scope", "decide")
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, "no user nobody@example.com")

	for _, sub := range []string{"create", "list", "revoke"} {
		r := run(t, env, "token", sub, "--help")
		require.Equal(t, exitOK, r.code, sub)
		require.Contains(t, r.stderr, "Usage: countersign token "+sub)
	}
	r = run(t, env, "token", "create", "--help")
	require.Contains(t, r.stderr, "decide ", "the help lists the scopes")

	r = run(t, env, "token", "list")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, 4, strings.Count(r.stdout, "\n"), "a header and three tokens: the refused ones made nothing\n%s", r.stdout)
	line := regexp.MustCompile(`(?m)^` + id + `\s.*$`).FindString(r.stdout)
	require.Regexp(t, `bot@example.com\s+triage\s+requests:read,decide\s+\S+\s+\S+\s+\S+\s+-$`, line)
	r = run(t, env, "token", "list", "--email", "nobody@example.com")
	require.Equal(t, exitFail, r.code)

	r = run(t, env, "token", "revoke", id)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "revoked "+id)
	_, _, err = account.TokenUser(context.Background(), pool, secret, time.Now())
	require.ErrorIs(t, err, account.ErrTokenRefused, "revoked at once")
	r = run(t, env, "token", "revoke", id)
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, "already revoked")
	r = run(t, env, "token", "revoke", "cs_00000000")
	require.Equal(t, exitFail, r.code)
	require.Contains(t, r.stderr, "no token cs_00000000")

	r = run(t, env, "token", "list", "--email", "bot@example.com", "--json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var listed []struct {
		ID        string     `json:"id"`
		Scopes    []string   `json:"scopes"`
		RevokedAt *time.Time `json:"revoked_at"`
		RevokedBy *string    `json:"revoked_by"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &listed))
	require.Len(t, listed, 3)
	require.NotContains(t, r.stdout, "hash", "never the secret or its hash")
	for _, l := range listed {
		if l.ID == id {
			require.NotNil(t, l.RevokedAt)
			require.Equal(t, "cli", *l.RevokedBy)
		}
	}

	r = run(t, env, "audit", "export", "--format", "jsonl", "--kind", "token.created")
	require.Equal(t, 3, strings.Count(r.stdout, "\n"), r.stdout)
	r = run(t, env, "audit", "export", "--format", "jsonl", "--kind", "token.revoked")
	require.Equal(t, 1, strings.Count(r.stdout, "\n"), r.stdout)
	require.NotContains(t, r.stdout, secret)

	r = run(t, env, "token", "create", "--email", "bot@example.com", "--name", "agent", "--scope", "approvals:write")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stderr, "(approvals:write; expires ", "an agent's token for the approvals API")
}
