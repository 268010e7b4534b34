package store

import (
	"context"
	"fmt"
	"time"

	"github.com/countersign/countersign/vocab"
)

// Orphan is a run under way that no execution holds: its lease lapsed, it
// holds no lease time and was not touched for a lease, or its job was fetched
// by a worker that died before claiming it.
type Orphan struct {
	ID         string
	Status     vocab.RunStatus
	ResumeSeq  int
	Recoveries int
	HadOwner   bool   // an execution had claimed it: its worker was lost
	JobState   string // the state of the newest River job for its resume sequence, "" if none
	LiveJob    bool   // a job for its resume sequence is queued, or was fetched within the lease
}

// liveJob is true when a job for run r's resume sequence can still execute:
// queued, waiting for its time or retry, or fetched within the lease ($1).
const liveJob = `EXISTS (SELECT 1 FROM river_job j
	WHERE j.kind = 'workflow_run' AND j.args @> jsonb_build_object('run_id', r.id::text, 'seq', r.resume_seq)
		AND (j.state IN ('available', 'scheduled', 'retryable', 'pending')
			OR (j.state = 'running' AND j.attempted_at >= now() - $1::bigint * interval '1 microsecond')))`

// RunOrphansLock finds up to limit runs under way whose lease lapsed, that
// hold no lease time and were not updated for lease (a new or resumed run
// whose job may have been cancelled before any execution claimed it), or
// whose job a worker fetched more than lease ago without claiming it, and locks
// them until tx ends, skipping rows another sweeper holds. It reads River's
// job table: whether a job for the run's resume sequence can still execute
// decides between waiting for it and handing the run on.
func RunOrphansLock(ctx context.Context, db DBTX, lease time.Duration, limit int) ([]Orphan, error) {
	rows, err := db.Query(ctx, `
		WITH candidates AS (
			(SELECT id FROM workflow_runs
			 WHERE status IN ('queued', 'running', 'retrying') AND lease_until < now()
			 ORDER BY lease_until LIMIT $2)
			UNION
			(SELECT id FROM workflow_runs
			 WHERE status IN ('queued', 'running', 'retrying') AND lease_until IS NULL
				AND updated_at < now() - $1::bigint * interval '1 microsecond'
			 ORDER BY updated_at LIMIT $2)
			UNION
			(SELECT r.id FROM river_job j
			 JOIN workflow_runs r ON r.id = (j.args->>'run_id')::uuid AND r.resume_seq = (j.args->>'seq')::int
			 WHERE j.state = 'running' AND j.kind = 'workflow_run'
				AND j.attempted_at < now() - $1::bigint * interval '1 microsecond'
				AND r.status IN ('queued', 'running', 'retrying')
			 LIMIT $2)
		)
		SELECT r.id, r.status, r.resume_seq, r.recoveries, r.lease_owner IS NOT NULL,
			coalesce((SELECT j.state::text FROM river_job j
				WHERE j.kind = 'workflow_run' AND j.args @> jsonb_build_object('run_id', r.id::text, 'seq', r.resume_seq)
				ORDER BY j.id DESC LIMIT 1), ''),
			`+liveJob+`
		FROM workflow_runs r JOIN candidates c ON c.id = r.id
		WHERE r.status IN ('queued', 'running', 'retrying') AND (r.lease_owner IS NULL OR r.lease_until < now())
		LIMIT $2
		FOR UPDATE OF r SKIP LOCKED`, lease.Microseconds(), limit)
	if err != nil {
		return nil, fmt.Errorf("find orphaned runs: %w", err)
	}
	defer rows.Close()
	var out []Orphan
	for rows.Next() {
		var o Orphan
		if err := rows.Scan(&o.ID, &o.Status, &o.ResumeSeq, &o.Recoveries, &o.HadOwner, &o.JobState, &o.LiveJob); err != nil {
			return nil, fmt.Errorf("scan orphaned run: %w", err)
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// RunRecheck puts off looking at a run whose job can still execute: it drops
// a lapsed owner (that job will claim the run) and sets when to look again.
func RunRecheck(ctx context.Context, db DBTX, id string, seq int, after time.Duration) error {
	_, err := db.Exec(ctx, `
		UPDATE workflow_runs SET lease_owner = NULL, lease_until = now() + $3::bigint * interval '1 microsecond'
		WHERE id = $1 AND resume_seq = $2 AND (lease_owner IS NULL OR lease_until < now())`, id, seq, after.Microseconds())
	if err != nil {
		return fmt.Errorf("recheck run: %w", err)
	}
	return nil
}

// RunRecover hands a run whose execution was lost to a new resume sequence,
// fencing off the lost one (its job can no longer claim the run, nor its
// steps be recorded), and counts a recovery, not a failure. It returns the new
// sequence, or ErrNotFound when the run moved on since it was found. The job
// check is repeated here, on this statement's snapshot: a row locked just
// after another sweeper committed its hand-on was read without that sweeper's
// new job.
func RunRecover(ctx context.Context, db DBTX, id string, seq int, lease time.Duration) (int, error) {
	var next int
	err := db.QueryRow(ctx, `
		UPDATE workflow_runs r SET resume_seq = resume_seq + 1, recoveries = recoveries + 1,
			lease_owner = NULL, lease_until = now() + $1::bigint * interval '1 microsecond', updated_at = now()
		WHERE id = $2 AND resume_seq = $3 AND status IN ('queued', 'running', 'retrying')
			AND (lease_owner IS NULL OR lease_until < now()) AND NOT `+liveJob+`
		RETURNING resume_seq`, lease.Microseconds(), id, seq).Scan(&next)
	if err != nil {
		return 0, fmt.Errorf("recover run: %w", interpret(err))
	}
	return next, nil
}

// RunFailOrphan ends an orphaned run as failed. It returns ErrNotFound when
// the run moved on since it was found (see RunRecover).
func RunFailOrphan(ctx context.Context, db DBTX, id string, seq int, code, message string, from []string, lease time.Duration) error {
	tag, err := db.Exec(ctx, `
		UPDATE workflow_runs r SET status = 'failed', error_code = $4, error_message = $5, updated_at = now(),
			finished_at = now(), lease_owner = NULL, lease_until = NULL
		WHERE id = $2 AND resume_seq = $3 AND status = ANY($6) AND (lease_owner IS NULL OR lease_until < now())
			AND NOT `+liveJob,
		lease.Microseconds(), id, seq, code, message, from)
	if err != nil {
		return fmt.Errorf("fail orphaned run: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
