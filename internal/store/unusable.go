package store

import (
	"context"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"

	"github.com/countersign/countersign/vocab"
)

// Unusable is a completed run flagged as unusable (migration 25).
type Unusable struct {
	RunID     string                 `json:"run_id"`
	Workflow  string                 `json:"workflow"`
	Category  vocab.UnusableCategory `json:"category"`
	Reason    string                 `json:"reason"`
	FlaggedBy string                 `json:"flagged_by"`
	CreatedAt time.Time              `json:"created_at"`
	// BusinessKey is the run's, set by UnusableList only.
	BusinessKey string `json:"business_key,omitempty"`
}

func unusableFromInternal(r *dbsqlc.RunUnusable) *Unusable {
	return &Unusable{RunID: r.RunID, Workflow: r.Workflow, Category: vocab.UnusableCategory(r.Category), Reason: r.Reason,
		FlaggedBy: r.FlaggedBy, CreatedAt: r.CreatedAt}
}

// UnusableInsert records a flag. Returns ErrConflict when the run is already
// flagged, ErrInvalidInput for a value the table refuses.
func UnusableInsert(ctx context.Context, db DBTX, u Unusable) (*Unusable, error) {
	r, err := queries.UnusableInsert(ctx, db, dbsqlc.UnusableInsertParams{RunID: u.RunID, Workflow: u.Workflow,
		Category: string(u.Category), Reason: u.Reason, FlaggedBy: u.FlaggedBy})
	if err != nil {
		return nil, fmt.Errorf("flag run unusable: %w", interpret(err))
	}
	return unusableFromInternal(r), nil
}

// UnusableGet returns a run's flag, or ErrNotFound when it has none.
func UnusableGet(ctx context.Context, db DBTX, runID string) (*Unusable, error) {
	r, err := queries.UnusableGet(ctx, db, runID)
	if err != nil {
		return nil, fmt.Errorf("get unusable flag: %w", interpret(err))
	}
	return unusableFromInternal(r), nil
}

// UnusableFilter selects flags: one category and one workflow when not "",
// those before (BeforeAt, BeforeID) when BeforeID is not "", at most Limit.
type UnusableFilter struct {
	Category vocab.UnusableCategory
	Workflow string
	BeforeAt time.Time
	BeforeID string
	Limit    int
}

// UnusableList returns flags newest first.
func UnusableList(ctx context.Context, db DBTX, f UnusableFilter) ([]*Unusable, error) {
	before := f.BeforeID
	if before == "" {
		before = "00000000-0000-0000-0000-000000000000"
	}
	rows, err := queries.UnusableList(ctx, db, dbsqlc.UnusableListParams{Category: string(f.Category), Workflow: f.Workflow,
		Paged: f.BeforeID != "", BeforeAt: f.BeforeAt, BeforeID: before, RowLimit: int32(f.Limit)})
	if err != nil {
		return nil, fmt.Errorf("list unusable runs: %w", interpret(err))
	}
	return convertAll(rows, func(r *dbsqlc.UnusableListRow) *Unusable {
		u := unusableFromInternal(&r.RunUnusable)
		u.BusinessKey = r.BusinessKey
		return u
	}), nil
}
