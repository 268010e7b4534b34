package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"
	"github.com/countersign/countersign/vocab"
)

// ParamRange is one numeric parameter's range: the actions a grant or a
// promoted rule covers have it, between Min and Max inclusive, or, when
// Optional (some approved actions lacked it), either lack it or have it
// between Min and Max.
type ParamRange struct {
	Param    string  `json:"param"`
	Min      float64 `json:"min"`
	Max      float64 `json:"max"`
	Optional bool    `json:"optional,omitempty"`
}

// Grant is a time-boxed policy grant promoted from decisions: actions of
// ActionKind that Rule sends to humans, matching Condition, go to Tier until
// ExpiresAt (or until revoked).
type Grant struct {
	ID            int64        `json:"id"`
	Rule          string       `json:"rule"`
	ActionKind    string       `json:"action_kind"`
	Tier          vocab.Tier   `json:"tier"`
	Condition     string       `json:"condition"`
	Ranges        []ParamRange `json:"ranges"`
	PolicyVersion int          `json:"policy_version"`
	Decided       int          `json:"decided"`
	Approved      int          `json:"approved"`
	WindowStart   time.Time    `json:"window_start"`
	CreatedBy     string       `json:"created_by"`
	CreatedAt     time.Time    `json:"created_at"`
	ExpiresAt     time.Time    `json:"expires_at"`
	RevokedBy     *string      `json:"revoked_by,omitempty"`
	RevokedAt     *time.Time   `json:"revoked_at,omitempty"`
}

// Live reports whether g applies at t: not revoked and not expired.
func (g *Grant) Live(t time.Time) bool { return g.RevokedAt == nil && t.Before(g.ExpiresAt) }

func grantFromInternal(r *dbsqlc.PolicyGrant) *Grant {
	g := &Grant{ID: r.ID, Rule: r.Rule, ActionKind: r.ActionKind, Tier: vocab.Tier(r.Tier), Condition: r.Condition,
		PolicyVersion: r.PolicyVersion, Decided: r.Decided, Approved: r.Approved, WindowStart: r.WindowStart,
		CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt, RevokedBy: r.RevokedBy, RevokedAt: r.RevokedAt}
	_ = json.Unmarshal(r.Ranges, &g.Ranges) // written by GrantInsert from []ParamRange
	return g
}

// GrantInsert stores g (its ID, CreatedAt and revocation are ignored) and
// returns the stored grant. Returns ErrInvalidInput when a column's check
// refuses it (a tier other than auto or batched, an expiry in the past).
func GrantInsert(ctx context.Context, db DBTX, g *Grant) (*Grant, error) {
	ranges, err := json.Marshal(g.Ranges)
	if err != nil {
		return nil, fmt.Errorf("encode grant ranges: %w", err)
	}
	if g.Ranges == nil {
		ranges = []byte("[]")
	}
	r, err := queries.GrantInsert(ctx, db, dbsqlc.GrantInsertParams{Rule: g.Rule, ActionKind: g.ActionKind, Tier: string(g.Tier),
		Condition: g.Condition, Ranges: ranges, PolicyVersion: g.PolicyVersion, Decided: g.Decided, Approved: g.Approved,
		WindowStart: g.WindowStart, CreatedBy: g.CreatedBy, ExpiresAt: g.ExpiresAt})
	if err != nil {
		return nil, fmt.Errorf("insert grant: %w", interpret(err))
	}
	return grantFromInternal(r), nil
}

// GrantListLive returns the grants in force (neither revoked nor expired by
// the database's clock), oldest first.
func GrantListLive(ctx context.Context, db DBTX) ([]*Grant, error) {
	rows, err := queries.GrantListLive(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list live grants: %w", interpret(err))
	}
	return convertAll(rows, grantFromInternal), nil
}

// GrantListRecent returns the live grants, then the newest others, at most limit.
func GrantListRecent(ctx context.Context, db DBTX, limit int) ([]*Grant, error) {
	rows, err := queries.GrantListRecent(ctx, db, int32(min(limit, 1000))) //nolint:gosec // bounded above
	if err != nil {
		return nil, fmt.Errorf("list grants: %w", interpret(err))
	}
	return convertAll(rows, grantFromInternal), nil
}

// GrantRevoke ends a live grant now. Returns ErrNotFound when there is no
// such grant or it is no longer live.
func GrantRevoke(ctx context.Context, db DBTX, id int64, actor string) (*Grant, error) {
	r, err := queries.GrantRevoke(ctx, db, dbsqlc.GrantRevokeParams{ID: id, Actor: actor})
	if err != nil {
		return nil, fmt.Errorf("revoke grant: %w", interpret(err))
	}
	return grantFromInternal(r), nil
}
