package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ScaleReport is the engine measured again on a database that holds a large
// history of ended runs (issue 14): the same runs, workers and workflow as
// the fresh measurement, after a bulk load, VACUUM ANALYZE and a checkpoint.
type ScaleReport struct {
	Runs        int           // ended runs loaded
	Steps       int64         // their steps
	Requests    int64         // their approval requests, each ended
	Events      int64         // their audit events
	LoadTime    time.Duration // the load
	VacuumTime  time.Duration // VACUUM ANALYZE and CHECKPOINT after it
	EngineSteps float64       // steps per second through the engine
	EngineRuns  float64       // runs per second through the engine
	// Buffers of workflow_runs' indexes read or hit per run measured (from
	// pg_statio_user_indexes, this database's alone, so not the machine's
	// noise), all but workflow_runs_workflow, which the measurement's own
	// polling reads: the engine's lookups of runs and its index insertions.
	IndexBuffersPerRun float64
	// P measured again on this database, in as many samples as the fresh
	// measurement, alternating with the engine's: a shared machine's speed
	// drifts over the minutes of the load, and the engine is compared with
	// the fresh database's as ratios to the P of their own time.
	// BaselineSteps, EngineSteps and EngineRuns are the samples' medians.
	BaselineSteps                  float64
	BaselineSamples, EngineSamples []float64
}

// StepRatio is engine steps/s at scale over P: the median of the samples'
// ratios, each engine sample over the P taken just before it, as the fresh
// measurement's (Report.StepRatio).
func (s ScaleReport) StepRatio() float64 {
	return stepRatio(s.BaselineSteps, s.EngineSteps, s.BaselineSamples, s.EngineSamples)
}

// Ratio is the engine's throughput at scale over that on the fresh
// database, each as a ratio to its own P; the target is at least 0.80.
func (s ScaleReport) Ratio(fresh *Report) float64 { return s.StepRatio() / fresh.StepRatio() }

// engineAtScale loads o.ScaleRuns ended runs and measures the engine again,
// as engineThroughput did on the fresh database. The fresh measurement's
// runs are deleted first: the second one starts the same runs by the same
// business keys.
func engineAtScale(ctx context.Context, pool *pgxpool.Pool, dbURL string, o Options, progress io.Writer) (*ScaleReport, error) {
	s := &ScaleReport{Runs: o.ScaleRuns}
	if _, err := pool.Exec(ctx, `DELETE FROM workflow_runs WHERE workflow = 'bench_auto'`); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "engine at scale: loading %d ended runs with their steps, requests and audit events ...\n", o.ScaleRuns)
	t0 := time.Now()
	if err := loadHistory(ctx, pool, o.ScaleRuns, s, progress); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	s.LoadTime = time.Since(t0)
	t0 = time.Now()
	// What an operator's database looks like between two autovacuums: dead
	// tuples gone, statistics of a table of ended runs, pages written out.
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
		return nil, err
	}
	// CHECKPOINT takes a superuser or pg_checkpoint; without either the
	// measurement starts wherever the server's own checkpoints are.
	if _, err := pool.Exec(ctx, `CHECKPOINT`); err != nil {
		fmt.Fprintf(progress, "engine at scale: no checkpoint (%v)\n", err)
	}
	s.VacuumTime = time.Since(t0)
	fmt.Fprintf(progress, "engine at scale: loaded in %s, vacuumed in %s; P and six-step workflows again ...\n",
		s.LoadTime.Round(time.Second), s.VacuumTime.Round(time.Second))
	var runs []float64
	var buffers int64
	for i := range max(o.Samples, 1) {
		fmt.Fprintf(progress, "engine at scale: P and the engine (sample %d of %d) ...\n", i+1, max(o.Samples, 1))
		p, err := baselineSteps(ctx, pool, o)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		before, err := runIndexBuffers(ctx, pool)
		if err != nil {
			return nil, err
		}
		// Each sample starts runs of business keys of its own, as the
		// fresh samples did (whose runs were deleted above).
		var rep Report
		if err := engineThroughput(ctx, pool, dbURL, o, i, &rep); err != nil {
			return nil, err
		}
		// The measured process has stopped; its backends have reported their
		// counts on the way out, or do within a second.
		time.Sleep(1500 * time.Millisecond)
		after, err := runIndexBuffers(ctx, pool)
		if err != nil {
			return nil, err
		}
		buffers += after - before
		s.BaselineSamples = append(s.BaselineSamples, p)
		s.EngineSamples = append(s.EngineSamples, rep.EngineSteps)
		runs = append(runs, rep.EngineRuns)
	}
	s.IndexBuffersPerRun = float64(buffers) / float64(o.Runs*len(runs))
	s.BaselineSteps = median(slices.Clone(s.BaselineSamples))
	s.EngineSteps = median(slices.Clone(s.EngineSamples))
	s.EngineRuns = median(runs)
	return s, nil
}

// loadHistory inserts n ended runs of the console's three workflows, created
// one every 2.6 s back from now (a month for a million), in a few statements:
//
//   - runs: 90% completed, 4% failed, 4% rejected, 2% cancelled;
//   - steps: the six of the benchmark's workflow for a completed run (the
//     fourth its approval), as far as the gate for a rejected or cancelled
//     one, three for a failed one, the last of them failed;
//   - requests: one a run that reached its gate; one in four explicit and
//     decided by a person (with its decision row), the others auto-approved;
//   - audit events: the run's start, its failure or cancellation, its
//     request (an automatic decision, or the request and a person's);
//     inserted chained after the chain's head (their audit_chain rows:
//     seq, prev_hash, hash; in the
//     order generated rather than by time, which would cost a sort), with
//     hashes that link but are not the chainer's: this suite does not verify
//     the chain (the audit suite does), and the chainer of the measured
//     process must not spend it chaining a history.
func loadHistory(ctx context.Context, pool *pgxpool.Pool, n int, s *ScaleReport, progress io.Writer) error {
	type stmt struct {
		q     string
		count *int64
	}
	var runs, decisions, queued int64
	// Secondary indexes are built after the load, as a bulk load does: a
	// sorted build is many times quicker than as many insertions. Those
	// that back a constraint (primary keys, unique keys) stay.
	rows, err := pool.Query(ctx, `SELECT i.indexname, i.indexdef FROM pg_indexes i
		WHERE i.schemaname = current_schema() AND i.tablename = ANY($1)
			AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)`,
		[]string{"workflow_runs", "workflow_steps", "approval_requests", "decisions", "audit_events"})
	if err != nil {
		return err
	}
	type index struct{ name, def string }
	indexes, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ix index, err error) {
		return ix, r.Scan(&ix.name, &ix.def)
	})
	if err != nil {
		return err
	}
	for _, ix := range indexes {
		if _, err := pool.Exec(ctx, "DROP INDEX "+pgx.Identifier{ix.name}.Sanitize()); err != nil {
			return err
		}
	}
	// The rows refer to each other as they should; their foreign keys need
	// not be checked row by row. That takes a superuser: others check them.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET session_replication_role = replica`); err == nil {
		defer conn.Exec(context.WithoutCancel(ctx), `RESET session_replication_role`) //nolint:errcheck // the connection goes back to the pool
	}
	// Memory for the sorts of the index builds, in this session only.
	if _, err := conn.Exec(ctx, `SET maintenance_work_mem = '512MB'`); err != nil {
		return err
	}
	defer conn.Exec(context.WithoutCancel(ctx), `RESET maintenance_work_mem`) //nolint:errcheck // the connection goes back to the pool
	for _, st := range []stmt{
		{`INSERT INTO workflow_runs (workflow, business_key, status, input, output, error_code, error_message,
				attempt, current_step, steps_used, model_calls, tokens_used, started_by, created_at, updated_at, finished_at)
			SELECT (ARRAY['support_triage', 'lead_enrichment', 'content_review'])[1 + g % 3], 'history-' || g, h.status,
				jsonb_build_object('ticket', g, 'customer', 'customer-' || (g % 5000)),
				CASE WHEN h.status = 'completed' THEN '{"ok": true}'::jsonb END,
				CASE WHEN h.status = 'failed' THEN 'step_failed' END,
				CASE WHEN h.status = 'failed' THEN 'run_checks: upstream timed out' END,
				1, h.last_step, h.steps, 1, 420, 'agent@bench.example', h.at, h.at + interval '3 seconds', h.at + interval '3 seconds'
			FROM generate_series(1, $1::int) g,
			LATERAL (SELECT now() - interval '1 millisecond' * (2600::bigint * g) AS at,
				CASE WHEN g % 50 < 45 THEN 'completed' WHEN g % 50 < 47 THEN 'failed' WHEN g % 50 < 49 THEN 'rejected' ELSE 'cancelled' END AS status) t,
			LATERAL (SELECT t.status, t.at,
				CASE t.status WHEN 'completed' THEN 6 WHEN 'failed' THEN 3 ELSE 4 END AS steps,
				CASE t.status WHEN 'completed' THEN 'summarize_result' WHEN 'failed' THEN 'run_checks' ELSE 'request_approval' END AS last_step) h`,
			&runs},
		{`INSERT INTO workflow_steps (run_id, seq, name, kind, status, output, error, attempts, tokens, started_at, finished_at)
			SELECT r.id, k.seq, k.name, k.kind,
				CASE WHEN r.status = 'failed' AND k.seq = 2 THEN 'failed' ELSE 'completed' END,
				CASE WHEN r.status = 'failed' AND k.seq = 2 THEN NULL ELSE '{"n": 1}'::jsonb END,
				CASE WHEN r.status = 'failed' AND k.seq = 2 THEN 'upstream timed out' END,
				1, CASE k.kind WHEN 'model' THEN 420 ELSE 0 END,
				r.created_at + k.seq * interval '400 milliseconds', r.created_at + k.seq * interval '400 milliseconds' + interval '50 milliseconds'
			FROM workflow_runs r
			JOIN (VALUES (0, 'collect_context', 'step'), (1, 'propose_change', 'model'), (2, 'run_checks', 'step'),
				(3, 'request_approval', 'approval'), (4, 'apply_change', 'effect'), (5, 'summarize_result', 'step'))
				AS k(seq, name, kind) ON k.seq < r.steps_used
			WHERE r.business_key LIKE 'history-%'`,
			&s.Steps},
		{`INSERT INTO approval_requests (run_id, step_seq, workflow, tier, status, action_kind, summary, action,
				payload_hash, policy_version, rule, reason, started_by, created_at, decided_at, decided_by)
			SELECT r.id, 3, r.workflow, t.tier,
				CASE r.status WHEN 'completed' THEN 'approved' WHEN 'rejected' THEN 'rejected' ELSE 'cancelled' END,
				'crm.update', 'Update 2 CRM fields of ' || r.business_key,
				jsonb_build_object('kind', 'crm.update', 'summary', 'Update 2 CRM fields of ' || r.business_key,
					'params', jsonb_build_object('industry', 'Retail', 'website', 'https://example.com')),
				md5(r.id::text), 1, CASE t.tier WHEN 'auto' THEN 'small-crm-update' ELSE 'default-explicit' END,
				'bench history', r.started_by, r.created_at + interval '1200 milliseconds', r.created_at + interval '2 seconds',
				CASE t.tier WHEN 'auto' THEN 'policy' ELSE 'reviewer@bench.example' END
			FROM workflow_runs r,
			LATERAL (SELECT CASE WHEN r.status = 'rejected' OR hashtext(r.business_key) % 4 = 0 THEN 'explicit' ELSE 'auto' END AS tier) t
			WHERE r.business_key LIKE 'history-%' AND r.status <> 'failed'`,
			&s.Requests},
		{`INSERT INTO decisions (request_id, run_id, actor, verdict, payload_hash, policy_version, rule, tier, created_at)
			SELECT q.id, q.run_id, q.decided_by, CASE q.status WHEN 'rejected' THEN 'reject' ELSE 'approve' END,
				q.payload_hash, q.policy_version, q.rule, q.tier, q.decided_at
			FROM approval_requests q JOIN workflow_runs r ON r.id = q.run_id
			WHERE r.business_key LIKE 'history-%' AND q.tier = 'explicit' AND q.status <> 'cancelled'`,
			&decisions},
		{`WITH head AS (SELECT coalesce(max(seq), 0) AS seq FROM audit_chain),
			events AS (
				SELECT r.created_at AS at, r.started_by AS actor, 'run.started' AS kind, 'run' AS subject_type, r.id::text AS subject_id,
					r.id AS run_id, jsonb_build_object('workflow', r.workflow, 'business_key', r.business_key) AS details
				FROM workflow_runs r WHERE r.business_key LIKE 'history-%'
				UNION ALL
				SELECT r.finished_at, 'system', 'run.' || r.status, 'run', r.id::text, r.id, jsonb_build_object('workflow', r.workflow)
				FROM workflow_runs r WHERE r.business_key LIKE 'history-%' AND r.status IN ('failed', 'cancelled')
				UNION ALL
				SELECT q.created_at, 'system', CASE q.tier WHEN 'auto' THEN 'decision.auto' ELSE 'approval.requested' END,
					'request', q.id::text, q.run_id, jsonb_build_object('tier', q.tier, 'rule', q.rule)
				FROM approval_requests q JOIN workflow_runs r ON r.id = q.run_id WHERE r.business_key LIKE 'history-%'
				UNION ALL
				SELECT d.created_at, d.actor, 'decision.recorded', 'request', d.request_id::text, d.run_id,
					jsonb_build_object('verdict', d.verdict, 'rule', d.rule, 'tier', d.tier)
				FROM decisions d JOIN workflow_runs r ON r.id = d.run_id WHERE r.business_key LIKE 'history-%'
			),
			numbered AS (SELECT e.*, head.seq + row_number() OVER () AS seq, nextval('audit_events_id_seq') AS id FROM events e, head),
			appended AS (
				INSERT INTO audit_events (id, at, actor, kind, subject_type, subject_id, run_id, details)
				SELECT id, at, actor, kind, subject_type, subject_id, run_id, details FROM numbered ORDER BY seq)
			INSERT INTO audit_chain (seq, event_id, prev_hash, hash)
			SELECT seq, id, sha256(int8send(seq - 1)), sha256(int8send(seq)) FROM numbered ORDER BY seq`,
			&s.Events},
		// Without session_replication_role (not a superuser) the insert
		// queued its events for the chainer; they are chained already.
		{`DELETE FROM audit_unchained u USING audit_chain c WHERE c.event_id = u.event_id`, &queued},
	} {
		var args []any
		if st.count == &runs {
			args = append(args, n)
		}
		t0 := time.Now()
		tag, err := conn.Exec(ctx, st.q, args...)
		if err != nil {
			return err
		}
		*st.count = tag.RowsAffected()
		fmt.Fprintf(progress, "engine at scale: %d rows in %s\n", *st.count, time.Since(t0).Round(100*time.Millisecond))
	}
	if runs != int64(n) {
		return fmt.Errorf("loaded %d runs, not %d", runs, n)
	}
	t0 := time.Now()
	for _, ix := range indexes {
		if _, err := conn.Exec(ctx, ix.def); err != nil {
			return err
		}
	}
	fmt.Fprintf(progress, "engine at scale: %d indexes built in %s\n", len(indexes), time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// runIndexBuffers is the buffers of workflow_runs' indexes read or hit so
// far, all but workflow_runs_workflow.
func runIndexBuffers(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	err := pool.QueryRow(ctx, `SELECT coalesce(sum(idx_blks_hit + idx_blks_read), 0)::bigint FROM pg_statio_user_indexes
		WHERE relname = 'workflow_runs' AND indexrelname <> 'workflow_runs_workflow'`).Scan(&n)
	return n, err
}
