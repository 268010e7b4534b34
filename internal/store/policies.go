package store

import (
	"context"
	"fmt"
	"time"

	"github.com/countersign/countersign/vocab"
)

// PolicyVersion is one stored policy document.
type PolicyVersion struct {
	Version     int        `json:"version"`
	Source      string     `json:"source"`
	SHA256      string     `json:"sha256"`
	CreatedBy   string     `json:"created_by"`
	CreatedAt   time.Time  `json:"created_at"`
	Active      bool       `json:"active"`
	ActivatedBy *string    `json:"activated_by,omitempty"`
	ActivatedAt *time.Time `json:"activated_at,omitempty"`
}

const policyColumns = `version, source, sha256, created_by, created_at, active, activated_by, activated_at`

func scanPolicies(ctx context.Context, db DBTX, sql string, args ...any) ([]*PolicyVersion, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("query policies: %w", interpret(err))
	}
	defer rows.Close()
	var out []*PolicyVersion
	for rows.Next() {
		var p PolicyVersion
		if err := rows.Scan(&p.Version, &p.Source, &p.SHA256, &p.CreatedBy, &p.CreatedAt, &p.Active,
			&p.ActivatedBy, &p.ActivatedAt); err != nil {
			return nil, fmt.Errorf("scan policy: %w", interpret(err))
		}
		out = append(out, &p)
	}
	return out, interpret(rows.Err())
}

// PolicyActivate stores a new version and makes it the only active one.
func PolicyActivate(ctx context.Context, db DBTX, source, sha, actor string) (*PolicyVersion, error) {
	if _, err := db.Exec(ctx, `LOCK TABLE policies IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return nil, fmt.Errorf("lock policies: %w", interpret(err))
	}
	if _, err := db.Exec(ctx, `UPDATE policies SET active = false WHERE active`); err != nil {
		return nil, fmt.Errorf("deactivate policy: %w", interpret(err))
	}
	ps, err := scanPolicies(ctx, db, `
		INSERT INTO policies (source, sha256, created_by, active, activated_by, activated_at)
		VALUES ($1, $2, $3, true, $3, now()) RETURNING `+policyColumns, source, sha, actor)
	if err != nil {
		return nil, fmt.Errorf("insert policy: %w", interpret(err))
	}
	return ps[0], nil
}

// PolicyGetActive returns the active policy. Returns ErrNotFound when none has
// been activated.
func PolicyGetActive(ctx context.Context, db DBTX) (*PolicyVersion, error) {
	ps, err := scanPolicies(ctx, db, `SELECT `+policyColumns+` FROM policies WHERE active`)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, ErrNotFound
	}
	return ps[0], nil
}

// PolicyGet returns one version. Returns ErrNotFound if it does not exist.
func PolicyGet(ctx context.Context, db DBTX, version int) (*PolicyVersion, error) {
	ps, err := scanPolicies(ctx, db, `SELECT `+policyColumns+` FROM policies WHERE version = $1`, version)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, ErrNotFound
	}
	return ps[0], nil
}

// PolicyList returns every version, newest first.
func PolicyList(ctx context.Context, db DBTX) ([]*PolicyVersion, error) {
	return scanPolicies(ctx, db, `SELECT `+policyColumns+` FROM policies ORDER BY version DESC`)
}

// SimulationRow is a recorded request with what a policy may read about its
// run, and the verdict it got.
type SimulationRow struct {
	Request     *Request
	BusinessKey string
	RunInput    []byte
	RunAttempt  int
	// ModelCalls and TokensUsed are what the steps before the request
	// recorded: every attempt of a model step is a call, and its tokens
	// are those the step row kept.
	ModelCalls int
	TokensUsed int
	Verdict    vocab.Verdict // "" while undecided
}

// SimulationRows streams the requests made since t, oldest first, to fn.
func SimulationRows(ctx context.Context, db DBTX, since time.Time, fn func(*SimulationRow) error) error {
	rows, err := db.Query(ctx, `SELECT `+prefixed("r.", requestColumns)+`, w.business_key, w.input, w.attempt,
			u.model_calls, u.tokens_used, coalesce(d.verdict, '')
		FROM approval_requests r
		JOIN workflow_runs w ON w.id = r.run_id
		CROSS JOIN LATERAL (
			SELECT coalesce(sum(s.attempts) FILTER (WHERE s.kind = 'model'), 0)::int AS model_calls,
				coalesce(sum(s.tokens), 0)::int AS tokens_used
			FROM workflow_steps s WHERE s.run_id = r.run_id AND s.seq < r.step_seq) u
		LEFT JOIN decisions d ON d.request_id = r.id
		WHERE r.created_at >= $1 ORDER BY r.created_at, r.id`, since)
	if err != nil {
		return fmt.Errorf("simulation rows: %w", interpret(err))
	}
	defer rows.Close()
	for rows.Next() {
		var row SimulationRow
		if row.Request, err = scanRequest(rows, &row.BusinessKey, &row.RunInput, &row.RunAttempt,
			&row.ModelCalls, &row.TokensUsed, &row.Verdict); err != nil {
			return fmt.Errorf("scan simulation row: %w", interpret(err))
		}
		if err := fn(&row); err != nil {
			return err
		}
	}
	return interpret(rows.Err())
}
