package store_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/vocab"
)

// TestVocabularyMatchesTheDatabase checks every typed word against the
// migrations: the CHECK constraint on each column that stores it lists
// exactly the Go list, and each value (and a list of them, as the request's
// roles are stored) comes back from PostgreSQL as the same typed value.
func TestVocabularyMatchesTheDatabase(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	for _, tc := range []struct {
		name, table, column string
		check               func(t *testing.T, allowed []string)
	}{
		{"Tier", "approval_requests", "tier", matches(pool, vocab.Tiers())},
		{"Role", "users", "role", matches(pool, vocab.Roles())},
		{"NoticeDefaultRole", "notice_role_defaults", "role", matches(pool, vocab.Roles())},
		{"RunStatus", "workflow_runs", "status", matches(pool, vocab.RunStatuses())},
		{"RequestStatus", "approval_requests", "status", matches(pool, vocab.RequestStatuses())},
		{"Verdict", "decisions", "verdict", matches(pool, vocab.Verdicts())},
		{"StepKind", "workflow_steps", "kind", matches(pool, vocab.StepKinds())},
		{"StepStatus", "workflow_steps", "status", matches(pool, vocab.StepStatuses())},
		{"BatchStatus", "batches", "status", matches(pool, vocab.BatchStatuses())},
		{"DeliveryStatus", "callback_deliveries", "status", matches(pool, vocab.DeliveryStatuses())},
		{"UnusableCategory", "run_unusable", "category", matches(pool, vocab.UnusableCategories())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, checkValues(t, pool, tc.table, tc.column))
		})
	}
}

// matches returns a check that the database allows exactly values, and that
// each one round-trips through it unchanged.
func matches[T ~string](pool *pgxpool.Pool, values []T) func(t *testing.T, allowed []string) {
	return func(t *testing.T, allowed []string) {
		ctx := context.Background()
		got := make([]T, len(allowed))
		for i, a := range allowed {
			got[i] = T(a)
		}
		require.ElementsMatch(t, values, got, "the CHECK constraint and the Go list differ")
		for _, v := range values {
			var back T
			require.NoError(t, pool.QueryRow(ctx, `SELECT $1::text`, v).Scan(&back))
			require.Equal(t, v, back)
		}
		var back []T
		require.NoError(t, pool.QueryRow(ctx, `SELECT $1::text[]`, values).Scan(&back))
		require.Equal(t, values, back)
	}
}

var quoted = regexp.MustCompile(`'([^']*)'`)

// checkValues reads the values the single-column CHECK constraint on
// table.column allows, from the constraint's definition as PostgreSQL
// keeps it: CHECK ((status = ANY (ARRAY['queued'::text, ...]))).
func checkValues(t *testing.T, pool *pgxpool.Pool, table, column string) []string {
	t.Helper()
	var def string
	err := pool.QueryRow(context.Background(), `
		SELECT pg_get_constraintdef(c.oid)
		FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
		WHERE c.conrelid = $1::regclass AND c.contype = 'c' AND cardinality(c.conkey) = 1 AND a.attname = $2`,
		table, column).Scan(&def)
	require.NoError(t, err, "a CHECK constraint on %s.%s", table, column)
	var values []string
	for _, m := range quoted.FindAllStringSubmatch(def, -1) {
		values = append(values, m[1])
	}
	require.NotEmpty(t, values, def)
	return values
}
