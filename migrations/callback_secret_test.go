package migrations_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/migrations"
)

// Tokens made before migration 12 get a callback secret each: 32 bytes,
// different from every other token's.
func TestCallbackSecretsForOldTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { db.Close() })
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS)
	require.NoError(t, err)
	_, err = provider.DownTo(ctx, 11)
	require.NoError(t, err)

	_, err = pool.Exec(ctx, `WITH u AS (
			INSERT INTO users (email, name, role, password_hash) VALUES ('old@example.com', 'Old', 'approver', 'x') RETURNING id
		) INSERT INTO api_tokens (user_id, public_id, name, token_hash, scopes)
		SELECT id, 'cs_0000000' || n, 'old', 'hash' || n, ARRAY['decide'] FROM u, generate_series(1, 3) n`)
	require.NoError(t, err)

	_, err = provider.UpTo(ctx, 12)
	require.NoError(t, err)
	var n, distinct, sized int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT callback_secret),
		count(*) FILTER (WHERE octet_length(callback_secret) = 32) FROM api_tokens`).Scan(&n, &distinct, &sized))
	require.Equal(t, 3, n)
	require.Equal(t, 3, distinct)
	require.Equal(t, 3, sized)
}
