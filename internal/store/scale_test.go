package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// explainer is a store.DBTX that plans each statement a store function sends
// instead of running it: the statement and its arguments go to EXPLAIN
// (FORMAT JSON) on tx, and every scan of a table is recorded. It answers as
// if one row had been updated, and a RETURNING as if no row matched, which the
// tests ignore.
type explainer struct {
	t     *testing.T
	tx    pgx.Tx
	scans []scan
}

// scan is one node of a plan that reads a table.
type scan struct {
	Node, Relation, Index string
}

func (e *explainer) explain(ctx context.Context, sql string, args []any) {
	var doc []byte
	require.NoError(e.t, e.tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+sql, args...).Scan(&doc), sql)
	var plans []struct{ Plan json.RawMessage }
	require.NoError(e.t, json.Unmarshal(doc, &plans))
	var walk func(raw json.RawMessage)
	walk = func(raw json.RawMessage) {
		var n struct {
			Node     string            `json:"Node Type"`
			Relation string            `json:"Relation Name"`
			Index    string            `json:"Index Name"`
			Plans    []json.RawMessage `json:"Plans"`
		}
		require.NoError(e.t, json.Unmarshal(raw, &n))
		// The target of an UPDATE or INSERT is named on its ModifyTable node,
		// which reads nothing itself.
		if n.Relation != "" && n.Node != "ModifyTable" {
			e.scans = append(e.scans, scan{n.Node, n.Relation, n.Index})
		}
		for _, p := range n.Plans {
			walk(p)
		}
	}
	for _, p := range plans {
		walk(p.Plan)
	}
}

func (e *explainer) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	e.explain(ctx, sql, args)
	return pgconn.NewCommandTag("UPDATE 1"), nil
}

func (e *explainer) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	e.explain(ctx, sql, args)
	return e.tx.Query(ctx, "SELECT 1 WHERE false")
}

func (e *explainer) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	e.explain(ctx, sql, args)
	return e.tx.QueryRow(ctx, "SELECT 1 WHERE false")
}

// TestRunUpdatesAtScale checks that the engine's updates of one run find it
// by its primary key in a table of many ended runs whose statistics, as in a
// busy database between two ANALYZEs, know nothing of the runs under way:
// through any index searched by status (or restricted to the statuses that
// runs pass through), those statistics make the range of 'running' look
// empty, while it holds a dead entry for every earlier update (issue 14;
// migration 00023).
func TestRunUpdatesAtScale(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.pool.Exec(b.ctx, `INSERT INTO workflow_runs (workflow, business_key, status, current_step, steps_used,
			created_at, updated_at, finished_at)
		SELECT 'history', 'h-' || g, (ARRAY['completed', 'failed', 'rejected', 'cancelled'])[1 + g % 4], 'done', 6,
			now() - make_interval(secs => g), now() - make_interval(secs => g), now() - make_interval(secs => g)
		FROM generate_series(1, 100000) g`)
	require.NoError(t, err)
	_, err = b.pool.Exec(b.ctx, `VACUUM ANALYZE workflow_runs`)
	require.NoError(t, err)
	// Runs under way, after the statistics were taken.
	owner := uuid.NewString()
	var running []*store.Run
	for range 50 {
		r := b.run(t, "w")
		running = append(running, r)
	}
	for _, r := range running {
		_, err := store.RunClaim(b.ctx, b.pool, r.ID, 0, statuses(vocab.RunQueued), owner, time.Minute)
		require.NoError(t, err)
	}
	run := running[0]
	open := statuses(vocab.RunQueued, vocab.RunRunning, vocab.RunRetrying, vocab.RunWaitingHuman, vocab.RunSleeping, vocab.RunWaitingEvent)

	// Each statement, and the index it must go through (the primary key:
	// every one names the run by id).
	for _, c := range []struct {
		name string
		call func(db store.DBTX) error
	}{
		// The per-step run update (StepComplete's CTE): workflow_runs_pkey.
		{"StepComplete", func(db store.DBTX) error {
			return store.StepComplete(b.ctx, db, store.StepRecord{RunID: run.ID, Seq: 1, Name: "s", Kind: vocab.StepKindStep,
				Output: json.RawMessage(`1`), Attempts: 1, StartedAt: time.Now(), Owner: owner})
		}},
		// RunComplete: workflow_runs_pkey.
		{"RunComplete", func(db store.DBTX) error {
			return store.RunComplete(b.ctx, db, run.ID, owner, json.RawMessage(`1`), statuses(vocab.RunRunning))
		}},
		// RunSuspend: workflow_runs_pkey.
		{"RunSuspend", func(db store.DBTX) error {
			return store.RunSuspend(b.ctx, db, run.ID, "gate", statuses(vocab.RunRunning))
		}},
		// RunClaim: workflow_runs_pkey (before 00023 the sweeper's
		// workflow_runs_lease, read whole).
		{"RunClaim", func(db store.DBTX) error {
			_, err := store.RunClaim(b.ctx, db, run.ID, 0, statuses(vocab.RunQueued, vocab.RunRetrying, vocab.RunRunning), owner, time.Minute)
			return err
		}},
		// RunClaimHistory, the engine's claim (RunClaim's update and the
		// steps in one statement): workflow_runs_pkey.
		{"RunClaimHistory", func(db store.DBTX) error {
			_, _, err := store.RunClaimHistory(b.ctx, db, run.ID, 0, statuses(vocab.RunQueued, vocab.RunRetrying, vocab.RunRunning), owner, time.Minute)
			return err
		}},
		// RunClaimNext, a chained claim (the run of the next ready job):
		// workflow_runs_pkey.
		{"RunClaimNext", func(db store.DBTX) error {
			_, _, err := store.RunClaimNext(b.ctx, db, "default", "workflow_run",
				statuses(vocab.RunQueued, vocab.RunRetrying, vocab.RunRunning), owner, time.Minute)
			return err
		}},
		// RunLeaseRenew: workflow_runs_pkey.
		{"RunLeaseRenew", func(db store.DBTX) error {
			return store.RunLeaseRenew(b.ctx, db, run.ID, owner, time.Minute)
		}},
		// RunFail: workflow_runs_pkey.
		{"RunFail", func(db store.DBTX) error {
			return store.RunFail(b.ctx, db, run.ID, owner, string(vocab.RunRetrying), "E", "m", statuses(vocab.RunRunning), time.Minute)
		}},
		// RunSetStatus (a cancel): workflow_runs_pkey.
		{"RunSetStatus", func(db store.DBTX) error {
			return store.RunSetStatus(b.ctx, db, run.ID, open, string(vocab.RunCancelled))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
				for _, s := range runScans(t, b, mode, c.call) {
					require.Equal(t, "workflow_runs_pkey", s.Index, "%s: %s", mode, s)
					require.Regexp(t, regexp.MustCompile(`^Index (Only )?Scan$`), s.Node, "%s", mode)
				}
			}
		})
	}

	// The run list by a status under way goes through workflow_runs_open,
	// whose predicate (finished_at IS NULL) RunList states and the engine's
	// updates do not; by an ended status it never reads the table whole.
	for _, c := range []struct {
		status vocab.RunStatus
		index  string
	}{{vocab.RunRunning, "workflow_runs_open"}, {vocab.RunQueued, "workflow_runs_open"}, {vocab.RunRetrying, "workflow_runs_open"},
		{vocab.RunCancelled, ""}, {vocab.RunCompensated, ""}} {
		t.Run("RunList/"+string(c.status), func(t *testing.T) {
			scans := runScans(t, b, "force_custom_plan", func(db store.DBTX) error {
				_, err := store.RunList(b.ctx, db, store.RunListParams{Status: string(c.status)})
				return err
			})
			for _, s := range scans {
				require.NotContains(t, s.Node, "Seq Scan", "%s", s)
				if c.index != "" {
					require.Equal(t, c.index, s.Index, "%s", s)
				}
			}
		})
	}
}

// runScans plans what call sends, under plan_cache_mode mode, and returns the
// plans' scans of workflow_runs (at least one).
func runScans(t *testing.T, b *testBundle, mode string, call func(db store.DBTX) error) []scan {
	t.Helper()
	var runs []scan
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(b.ctx, "SET LOCAL plan_cache_mode = "+mode); err != nil {
			return err
		}
		e := &explainer{t: t, tx: tx}
		_ = call(e) // the explainer's answers are not the statement's
		for _, s := range e.scans {
			if s.Relation == "workflow_runs" {
				runs = append(runs, s)
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, runs, "%s: a plan that reads workflow_runs", mode)
	return runs
}

// TestRunIDsTimeOrdered checks the ids that the database gives new runs and
// requests: UUID version 7, their first 48 bits the creation time in Unix
// milliseconds, so that ids created later sort after.
func TestRunIDsTimeOrdered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	before := time.Now().Add(-time.Second) // the database's clock, not quite ours
	var ids []uuid.UUID
	for i := range 5 {
		r := b.run(t, "w")
		id := uuid.MustParse(r.ID)
		require.Equal(t, uuid.Version(7), id.Version(), r.ID)
		require.Equal(t, uuid.RFC4122, id.Variant(), r.ID)
		sec, nsec := id.Time().UnixTime()
		at := time.Unix(sec, nsec)
		require.WithinRange(t, at, before, time.Now().Add(time.Second), r.ID)
		ids = append(ids, id)
		if i == 0 {
			req := b.request(t, r, 1, requestOpts{})
			require.Equal(t, uuid.Version(7), uuid.MustParse(req.ID).Version(), req.ID)
		}
		time.Sleep(2 * time.Millisecond)
	}
	for i := 1; i < len(ids); i++ {
		require.Negative(t, bytes.Compare(ids[i-1][:], ids[i][:]), "%s before %s", ids[i-1], ids[i])
	}
	// Ids made before version 7 (a random version 4) are still ids.
	old := uuid.New()
	_, err := b.pool.Exec(b.ctx, `INSERT INTO workflow_runs (id, workflow, business_key) VALUES ($1, 'w', 'old')`, old)
	require.NoError(t, err)
	got, err := store.RunGet(b.ctx, b.pool, old.String())
	require.NoError(t, err)
	require.Equal(t, old.String(), got.ID)
}

// TestRunCompensatingIsOpen checks that a run undoing its effects has not
// finished until its undos are done, so that the run list finds it by its
// status under way (workflow_runs_open holds runs with no finished_at).
func TestRunCompensatingIsOpen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run := b.run(t, "w")
	require.NoError(t, store.RunSetStatus(b.ctx, b.pool, run.ID, statuses(vocab.RunQueued), string(vocab.RunFailed)))
	got, err := store.RunGet(b.ctx, b.pool, run.ID)
	require.NoError(t, err)
	require.NotNil(t, got.FinishedAt)

	seq, err := store.RunCompensateStart(b.ctx, b.pool, run.ID, "", statuses(vocab.RunFailed), string(vocab.RunFailed), "", "")
	require.NoError(t, err)
	got, err = store.RunGet(b.ctx, b.pool, run.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RunQueued, got.Status)
	require.Nil(t, got.FinishedAt)
	listed, err := store.RunList(b.ctx, b.pool, store.RunListParams{Status: string(vocab.RunQueued)})
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.Equal(t, run.ID, listed[0].ID)

	owner := uuid.NewString()
	_, err = store.RunClaim(b.ctx, b.pool, run.ID, seq, statuses(vocab.RunQueued), owner, time.Minute)
	require.NoError(t, err)
	require.NoError(t, store.RunCompensateEnd(b.ctx, b.pool, run.ID, owner, string(vocab.RunCompensated), ""))
	got, err = store.RunGet(b.ctx, b.pool, run.ID)
	require.NoError(t, err)
	require.NotNil(t, got.FinishedAt)
	listed, err = store.RunList(b.ctx, b.pool, store.RunListParams{Status: string(vocab.RunCompensated)})
	require.NoError(t, err)
	require.Len(t, listed, 1)
}

// TestStepUpdatesHOT checks that the engine's per-step update of a run is
// heap-only (migration 00032): StepComplete and StepFail change no indexed
// column of workflow_runs, and the table's fillfactor leaves the page room
// for the row's new versions, so a step adds no entry to any of the run's
// ten indexes. The claim, which changes the status and the lease, is not.
// PostgreSQL's counters of the current transaction say which update was HOT.
func TestStepUpdatesHOT(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run := b.run(t, "w")
	owner := uuid.NewString()
	err := pgx.BeginFunc(b.ctx, b.pool, func(tx pgx.Tx) error {
		counts := func() (updated, hot int) {
			require.NoError(t, tx.QueryRow(b.ctx, `SELECT pg_stat_get_xact_tuples_updated('workflow_runs'::regclass),
				pg_stat_get_xact_tuples_hot_updated('workflow_runs'::regclass)`).Scan(&updated, &hot))
			return updated, hot
		}
		_, err := store.RunClaim(b.ctx, tx, run.ID, 0, statuses(vocab.RunQueued), owner, time.Minute)
		require.NoError(t, err)
		updated, hot := counts()
		require.Equal(t, 1, updated)
		require.Equal(t, 0, hot, "the claim changes the status and the lease, which are indexed")

		for seq := range 6 {
			require.NoError(t, store.StepComplete(b.ctx, tx, store.StepRecord{RunID: run.ID, Seq: seq, Name: fmt.Sprint("s", seq),
				Kind: vocab.StepKindStep, Output: json.RawMessage(`{"ok":true}`), Tokens: 10, ModelCalls: 1, Attempts: 1,
				StartedAt: time.Now(), Owner: owner}))
		}
		require.NoError(t, store.StepFail(b.ctx, tx, store.StepRecord{RunID: run.ID, Seq: 6, Name: "s6", Kind: vocab.StepKindStep,
			Error: "boom", Attempts: 1, StartedAt: time.Now(), Owner: owner}))
		updated, hot = counts()
		require.Equal(t, 8, updated)
		require.Equal(t, 7, hot, "every step's update of the run is heap-only")

		got, err := store.RunGet(b.ctx, tx, run.ID)
		require.NoError(t, err)
		require.Equal(t, "s5", got.CurrentStep)
		require.Equal(t, 6, got.StepsUsed)
		require.Equal(t, 60, got.TokensUsed)
		require.Equal(t, 6, got.ModelCalls)

		// Room on each page for new versions of its rows.
		var opts []string
		require.NoError(t, tx.QueryRow(b.ctx, `SELECT reloptions FROM pg_class WHERE oid = 'workflow_runs'::regclass`).Scan(&opts))
		require.Contains(t, opts, "fillfactor=70")
		return nil
	})
	require.NoError(t, err)
}
