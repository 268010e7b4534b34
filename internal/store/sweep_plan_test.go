package store_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
)

// TestSweepJobLookupPlan checks that the sweeper finds a run's job with one
// probe of river_job_workflow_run (migration 37), not by reading every
// workflow_run job River keeps: with 300 queued runs past their lease and
// 20,000 completed jobs, neither the job's state nor live_job may scan
// river_job or filter it by kind alone, and the sweep still sees the runs
// whose jobs are queued as live and the others as not.
func TestSweepJobLookupPlan(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.pool.Exec(b.ctx, `INSERT INTO workflow_runs (workflow, business_key, input, started_by, updated_at)
		SELECT 'w', 'sweep-' || n, '{}', 'test', now() - interval '1 hour' FROM generate_series(1, 300) n`)
	require.NoError(t, err)
	// Every other run has its job queued; River keeps 20,000 completed ones.
	_, err = b.pool.Exec(b.ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state, finalized_at)
		SELECT jsonb_build_object('run_id', gen_random_uuid()::text, 'seq', 0), 'workflow_run', 25, 'default',
			'completed', now()
		FROM generate_series(1, 20000)`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `INSERT INTO river_job (args, kind, max_attempts, queue, state)
		SELECT jsonb_build_object('run_id', id::text, 'seq', resume_seq), 'workflow_run', 25, 'default', 'available'
		FROM workflow_runs WHERE business_key LIKE 'sweep-%' AND right(business_key, 1) IN ('0', '2', '4', '6', '8')`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `ANALYZE river_job; ANALYZE workflow_runs`)
	require.NoError(t, err)
	args := pgx.NamedArgs{"lease_micros": (15 * time.Second).Microseconds(), "row_limit": 200}

	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		var lines []string
		require.NoError(t, pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(b.ctx, "SET LOCAL plan_cache_mode = "+mode); err != nil {
				return err
			}
			rows, err := tx.Query(b.ctx, "EXPLAIN "+store.RunOrphansLockSQL, args)
			if err != nil {
				return err
			}
			lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		}))
		plan := strings.Join(lines, "\n")
		require.Contains(t, plan, "river_job_workflow_run", mode)
		require.NotContains(t, plan, "Seq Scan on river_job", mode)
		require.NotContains(t, plan, "river_job_kind", mode)
	}

	var live, dead int
	require.NoError(t, pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		orphans, err := store.RunOrphansLock(b.ctx, tx, 15*time.Second, 200)
		for _, o := range orphans {
			if o.LiveJob {
				live++
			} else {
				dead++
			}
		}
		return err
	}))
	require.Equal(t, 200, live+dead)
	require.InDelta(t, 100, live, 30)
}
