package migrations_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/migrations"
)

// Tokens made before migration 8 keep working with every scope they
// effectively had, under a legacy handle.
func TestTokenScopesKeepOldTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { db.Close() })
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	require.NoError(t, err)
	_, err = provider.DownTo(ctx, 7)
	require.NoError(t, err)

	secret := "cs_" + strings.Repeat("ab", 32) // the format before handles
	var id int64
	require.NoError(t, pool.QueryRow(ctx, `WITH u AS (
			INSERT INTO users (email, name, role, password_hash) VALUES ('old@example.com', 'Old', 'approver', 'x') RETURNING id
		) INSERT INTO api_tokens (user_id, name, token_hash) SELECT id, 'old', $1 FROM u RETURNING id`,
		account.HashToken(secret)).Scan(&id))

	// All the way up: the store's queries read columns of later migrations
	// (callback_secret, 12), and an old token must survive those too.
	_, err = provider.Up(ctx)
	require.NoError(t, err)
	u, tok, err := account.TokenUser(ctx, pool, secret, time.Now())
	require.NoError(t, err)
	require.Equal(t, "old@example.com", u.Email)
	// Every scope that existed then; later ones (approvals:write) are new
	// abilities that a token is given explicitly.
	require.Equal(t, []string{account.ScopeRunsRead, account.ScopeRunsWrite, account.ScopeRequestsRead,
		account.ScopeDecide, account.ScopeAuditRead}, tok.Scopes)
	require.Nil(t, tok.ExpiresAt)
	require.Regexp(t, `^legacy-[0-9]+$`, tok.PublicID)

	revoked, err := account.RevokeToken(ctx, pool, tok.PublicID, "cli")
	require.NoError(t, err)
	require.NotNil(t, revoked.RevokedAt)
	_, _, err = account.TokenUser(ctx, pool, secret, time.Now())
	require.ErrorIs(t, err, account.ErrTokenRefused)
}
