package store

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store/dbsqlc"

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

// policyResult converts the outcome of a query returning one policy version.
func policyResult(p *dbsqlc.Policy, err error) (*PolicyVersion, error) {
	if err != nil {
		return nil, interpret(err)
	}
	return policyFromInternal(p), nil
}

func policyFromInternal(p *dbsqlc.Policy) *PolicyVersion {
	return &PolicyVersion{Version: p.Version, Source: p.Source, SHA256: p.Sha256, CreatedBy: p.CreatedBy,
		CreatedAt: p.CreatedAt, Active: p.Active, ActivatedBy: p.ActivatedBy, ActivatedAt: p.ActivatedAt}
}

// PolicyActivate stores a new version and makes it the only active one.
func PolicyActivate(ctx context.Context, db DBTX, source, sha, actor string) (*PolicyVersion, error) {
	if err := queries.PolicyLockTable(ctx, db); err != nil {
		return nil, fmt.Errorf("lock policies: %w", interpret(err))
	}
	if err := queries.PolicyDeactivateAll(ctx, db); err != nil {
		return nil, fmt.Errorf("deactivate policy: %w", interpret(err))
	}
	p, err := policyResult(queries.PolicyInsertActive(ctx, db, dbsqlc.PolicyInsertActiveParams{Source: source, Sha256: sha, Actor: actor}))
	if err != nil {
		return nil, fmt.Errorf("insert policy: %w", err)
	}
	return p, nil
}

// PolicyLock takes the lock that activations take, so that the caller's
// transaction sees the active version stay as it is until it ends.
func PolicyLock(ctx context.Context, db DBTX) error {
	if err := queries.PolicyLockTable(ctx, db); err != nil {
		return fmt.Errorf("lock policies: %w", interpret(err))
	}
	return nil
}

// PolicyGetActive returns the active policy. Returns ErrNotFound when none has
// been activated.
func PolicyGetActive(ctx context.Context, db DBTX) (*PolicyVersion, error) {
	p, err := policyResult(queries.PolicyGetActive(ctx, db))
	if err != nil {
		return nil, fmt.Errorf("get active policy: %w", err)
	}
	return p, nil
}

// PolicyGet returns one version. Returns ErrNotFound if it does not exist.
func PolicyGet(ctx context.Context, db DBTX, version int) (*PolicyVersion, error) {
	p, err := policyResult(queries.PolicyGet(ctx, db, version))
	if err != nil {
		return nil, fmt.Errorf("get policy: %w", err)
	}
	return p, nil
}

// PolicyList returns every version, newest first.
func PolicyList(ctx context.Context, db DBTX) ([]*PolicyVersion, error) {
	ps, err := queries.PolicyList(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", interpret(err))
	}
	return convertAll(ps, policyFromInternal), nil
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

//go:embed sql/SimulationRows.sql
var simulationRowsSQL string

// simulationRow is a row of simulationRowsSQL.
type simulationRow struct {
	dbsqlc.ApprovalRequest
	RunBusinessKey string `db:"run_business_key"`
	RunInput       []byte `db:"run_input"`
	RunAttempt     int    `db:"run_attempt"`
	ModelCalls     int    `db:"model_calls"`
	TokensUsed     int    `db:"tokens_used"`
	Verdict        string `db:"verdict"`
}

// SimulationRows streams the requests made since t, oldest first, to fn.
func SimulationRows(ctx context.Context, db DBTX, since time.Time, fn func(*SimulationRow) error) error {
	rows, err := db.Query(ctx, simulationRowsSQL, pgx.NamedArgs{"since": since})
	if err != nil {
		return fmt.Errorf("simulation rows: %w", interpret(err))
	}
	defer rows.Close()
	for rows.Next() {
		r, err := pgx.RowToStructByName[simulationRow](rows)
		if err != nil {
			return fmt.Errorf("scan simulation row: %w", interpret(err))
		}
		err = fn(&SimulationRow{Request: requestFromInternal(&r.ApprovalRequest), BusinessKey: r.RunBusinessKey,
			RunInput: r.RunInput, RunAttempt: r.RunAttempt, ModelCalls: r.ModelCalls, TokensUsed: r.TokensUsed,
			Verdict: vocab.Verdict(r.Verdict)})
		if err != nil {
			return err
		}
	}
	return interpret(rows.Err())
}
