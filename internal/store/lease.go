package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/store/dbsqlc"

	"github.com/countersign/countersign/vocab"
)

// Orphan is a run under way that no execution holds: its lease lapsed, or its
// job was fetched by a worker that died before claiming it.
type Orphan struct {
	ID         string          `db:"id"`
	Status     vocab.RunStatus `db:"status"`
	ResumeSeq  int             `db:"resume_seq"`
	Recoveries int             `db:"recoveries"`
	HadOwner   bool            `db:"had_owner"` // an execution had claimed it: its worker was lost
	JobState   string          `db:"job_state"` // the state of the newest River job for its resume sequence, "" if none
	LiveJob    bool            `db:"live_job"`  // a job for its resume sequence is queued, or was fetched within the lease
}

// The sweeper's queries read River's job table, which sqlc cannot see (the
// goose migrations do not define it): they are hand-written .sql files,
// sharing one definition of a live job, and scanned by name.
var (
	//go:embed sql/live_job.sql
	liveJobSQL string
	//go:embed sql/RunOrphansLock.sql
	runOrphansLockSQL string
	//go:embed sql/RunRecover.sql
	runRecoverSQL string
	//go:embed sql/RunFailOrphan.sql
	runFailOrphanSQL string
)

// withLiveJob puts the live-job condition where a sweeper query says so.
func withLiveJob(query string) string {
	return strings.Replace(query, "/* live_job */", "("+liveJobSQL+")", 1)
}

// RunOrphansLock finds up to limit runs under way whose lease lapsed (or whose
// job a worker fetched more than lease ago without claiming the run) and locks
// them until tx ends, skipping rows another sweeper holds. It reads River's
// job table: whether a job for the run's resume sequence can still execute
// decides between waiting for it and handing the run on.
func RunOrphansLock(ctx context.Context, db DBTX, lease time.Duration, limit int) ([]Orphan, error) {
	rows, err := db.Query(ctx, withLiveJob(runOrphansLockSQL), pgx.NamedArgs{"lease_micros": lease.Microseconds(), "row_limit": limit})
	if err != nil {
		return nil, fmt.Errorf("find orphaned runs: %w", interpret(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[Orphan])
	if err != nil {
		return nil, fmt.Errorf("find orphaned runs: %w", interpret(err))
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// RunRecheck puts off looking at a run whose job can still execute: it drops
// a lapsed owner (that job will claim the run) and sets when to look again.
func RunRecheck(ctx context.Context, db DBTX, id string, seq int, after time.Duration) error {
	err := queries.RunRecheck(ctx, db, dbsqlc.RunRecheckParams{ID: id, ResumeSeq: seq, AfterMicros: after.Microseconds()})
	if err != nil {
		return fmt.Errorf("recheck run: %w", interpret(err))
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
	err := db.QueryRow(ctx, withLiveJob(runRecoverSQL),
		pgx.NamedArgs{"lease_micros": lease.Microseconds(), "id": id, "resume_seq": seq}).Scan(&next)
	if err != nil {
		return 0, fmt.Errorf("recover run: %w", interpret(err))
	}
	return next, nil
}

// RunFailOrphan ends an orphaned run as failed. It returns ErrNotFound when
// the run moved on since it was found (see RunRecover).
func RunFailOrphan(ctx context.Context, db DBTX, id string, seq int, code, message string, from []string, lease time.Duration) error {
	tag, err := db.Exec(ctx, withLiveJob(runFailOrphanSQL), pgx.NamedArgs{"lease_micros": lease.Microseconds(),
		"id": id, "resume_seq": seq, "error_code": code, "error_message": message, "from_statuses": from})
	if err := oneRow(tag.RowsAffected(), err); err != nil {
		return fmt.Errorf("fail orphaned run: %w", err)
	}
	return nil
}

//go:embed sql/RunClaimNext.sql
var runClaimNextSQL string

// claimNextRow is a run claimed by RunClaimNext with its steps as JSON.
type claimNextRow struct {
	dbsqlc.WorkflowRun
	Steps json.RawMessage `db:"steps"`
}

// Next names the run RunCompleteClaimNext claims after the one it
// completes: as RunClaimNext's arguments say.
type Next struct {
	Queue, Kind string
	From        []string
	Owner       string
	Lease       time.Duration
}

// RunCompleteClaimNext is RunComplete followed by RunClaimNext, pipelined:
// one round trip and one commit (the two statements form the implicit
// transaction of one pgx batch, which PostgreSQL commits at its Sync). It
// reports whether the run completed (false: owner no longer held it), and
// returns the next run with its history, or nil when none was ready.
func RunCompleteClaimNext(ctx context.Context, pool *pgxpool.Pool, id, owner string, output json.RawMessage, from []string,
	steps []StepRecord, next Next) (completed bool, run *Run, history []*Step, err error) {
	p, err := runCompleteParams(id, owner, output, from, steps)
	if err != nil {
		return false, nil, nil, err
	}
	// The generated statement and its arguments, as RunComplete sends them.
	var complete captured
	_, _ = queries.RunComplete(ctx, &complete, p)
	b := &pgx.Batch{}
	b.Queue(complete.sql, complete.args...).QueryRow(func(row pgx.Row) error {
		var n int64
		err := row.Scan(&n)
		completed = n > 0
		return err
	})
	b.Queue(runClaimNextSQL, pgx.NamedArgs{"queue": next.Queue, "kind": next.Kind, "from_statuses": next.From,
		"owner": next.Owner, "lease_micros": next.Lease.Microseconds()}).Query(func(rows pgx.Rows) error {
		row, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[claimNextRow])
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		run, history, err = claimedRun(row)
		return err
	})
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		return false, nil, nil, fmt.Errorf("complete run and claim the next: %w", interpret(err))
	}
	return completed, run, history, nil
}

// captured is a DBTX that keeps the statement a generated query sends,
// and sends nothing: RunCompleteClaimNext queues it in its batch.
type captured struct {
	sql  string
	args []any
}

var errCaptured = errors.New("captured, not sent")

func (c *captured) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	c.sql, c.args = sql, args
	return pgconn.CommandTag{}, errCaptured
}

func (c *captured) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	c.sql, c.args = sql, args
	return nil, errCaptured
}

func (c *captured) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	c.sql, c.args = sql, args
	return capturedRow{}
}

type capturedRow struct{}

func (capturedRow) Scan(...any) error { return errCaptured }

// RunClaimNext claims, for the execution owner, the run of the oldest job of
// the given kind that is available in queue and that no worker has fetched,
// deleting that job in the same statement (see sql/RunClaimNext.sql): the
// caller executes the run as its job would have, without River fetching,
// marking and completing a job for it. It returns the run and its recorded
// steps as RunClaimHistory does, and ErrNotFound when no such job is ready
// or its run could not be claimed.
func RunClaimNext(ctx context.Context, db DBTX, queue, kind string, from []string, owner string, lease time.Duration) (*Run, []*Step, error) {
	rows, err := db.Query(ctx, runClaimNextSQL, pgx.NamedArgs{"queue": queue, "kind": kind, "from_statuses": from,
		"owner": owner, "lease_micros": lease.Microseconds()})
	if err != nil {
		return nil, nil, fmt.Errorf("claim next run: %w", interpret(err))
	}
	row, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[claimNextRow])
	if err != nil {
		return nil, nil, fmt.Errorf("claim next run: %w", interpret(err))
	}
	return claimedRun(row)
}

// claimedRun converts RunClaimNext's row: the run and its steps.
func claimedRun(row claimNextRow) (*Run, []*Step, error) {
	var steps []*Step
	if err := json.Unmarshal(row.Steps, &steps); err != nil {
		return nil, nil, fmt.Errorf("claim next run: decode steps: %w", err)
	}
	if len(steps) == 0 {
		steps = nil
	}
	return runFromInternal(&row.WorkflowRun), steps, nil
}
