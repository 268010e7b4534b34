package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"
)

// ClaimTimeout is how long a claim ("I'm reviewing this") lasts without being
// renewed: long enough to read a request, short enough that an abandoned
// claim stops telling others to keep away.
const ClaimTimeout = 5 * time.Minute

// Claim is a reviewer's live mark on a pending request.
type Claim struct {
	RequestID string
	Actor     string
	ClaimedAt time.Time
	RenewedAt time.Time
}

// ClaimSet claims a pending request for actor at now, taking it over from a
// lapsed claim, and returns the live claim: the actor's, or someone else's
// that was live already (the caller tells which by Actor). Returns
// ErrNotFound when the request does not exist or is no longer pending.
func ClaimSet(ctx context.Context, db DBTX, requestID, actor string, now time.Time) (*Claim, error) {
	_, err := queries.ClaimSet(ctx, db, dbsqlc.ClaimSetParams{RequestID: requestID, Actor: actor, Now: now, LapsedBefore: now.Add(-ClaimTimeout)})
	if err != nil && !errors.Is(interpret(err), ErrNotFound) {
		return nil, fmt.Errorf("claim request: %w", interpret(err))
	}
	// No row back: the request is not pending, or someone else holds it.
	claims, err := ClaimListLive(ctx, db, []string{requestID}, now)
	if err != nil {
		return nil, err
	}
	if c, ok := claims[requestID]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("claim request: %w", ErrNotFound)
}

// ClaimRenew extends actor's live claim on a request to now. Returns
// ErrNotFound when the actor holds no live claim on it (it lapsed or was
// taken over).
func ClaimRenew(ctx context.Context, db DBTX, requestID, actor string, now time.Time) error {
	n, err := queries.ClaimRenew(ctx, db, dbsqlc.ClaimRenewParams{RequestID: requestID, Actor: actor, Now: now, LapsedBefore: now.Add(-ClaimTimeout)})
	if err := oneRow(n, err); err != nil {
		return fmt.Errorf("renew claim: %w", err)
	}
	return nil
}

// ClaimRelease drops actor's claim on a request; releasing a claim the actor
// does not hold changes nothing and is not an error.
func ClaimRelease(ctx context.Context, db DBTX, requestID, actor string) error {
	if _, err := queries.ClaimRelease(ctx, db, dbsqlc.ClaimReleaseParams{RequestID: requestID, Actor: actor}); err != nil {
		return fmt.Errorf("release claim: %w", interpret(err))
	}
	return nil
}

// ClaimListLive returns the live claims on the given requests, by request id.
func ClaimListLive(ctx context.Context, db DBTX, requestIDs []string, now time.Time) (map[string]*Claim, error) {
	rows, err := queries.ClaimListLive(ctx, db, dbsqlc.ClaimListLiveParams{RequestIds: requestIDs, LapsedBefore: now.Add(-ClaimTimeout)})
	if err != nil {
		return nil, fmt.Errorf("list claims: %w", interpret(err))
	}
	out := make(map[string]*Claim, len(rows))
	for _, r := range rows {
		out[r.RequestID] = &Claim{RequestID: r.RequestID, Actor: r.Actor, ClaimedAt: r.ClaimedAt, RenewedAt: r.RenewedAt}
	}
	return out, nil
}

// VoteListByActor returns which of the given requests actor has already
// approved (a vote toward a multi-approval rule), as a set of request ids.
func VoteListByActor(ctx context.Context, db DBTX, actor string, requestIDs []string) (map[string]bool, error) {
	ids, err := queries.VoteListByActor(ctx, db, dbsqlc.VoteListByActorParams{Actor: actor, RequestIds: requestIDs})
	if err != nil {
		return nil, fmt.Errorf("list votes: %w", interpret(err))
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// SavedFilter is a reviewer's named inbox filter set.
type SavedFilter struct {
	ID    int64
	Name  string
	Query string // the inbox's filter query string
}

// SavedFiltersMax bounds a user's saved filters, so that the inbox's menu of
// them stays short and a script cannot grow the table without end.
const SavedFiltersMax = 30

// ErrTooManyFilters is returned when a user already has SavedFiltersMax filters.
var ErrTooManyFilters = fmt.Errorf("%w: at most %d saved filters per user", ErrInvalidInput, SavedFiltersMax)

// SavedFilterSave saves (or, under an existing name, replaces) a filter set
// of the user. Returns ErrTooManyFilters when the user has SavedFiltersMax
// already. The caller checks the name (1 to 60 characters) and the query (at
// most 1,000 bytes), which the table's constraints also hold.
func SavedFilterSave(ctx context.Context, db DBTX, userID int64, name, query string) (*SavedFilter, error) {
	r, err := queries.SavedFilterInsert(ctx, db, dbsqlc.SavedFilterInsertParams{UserID: userID, Name: name, Query: query, MaxPerUser: SavedFiltersMax})
	if err != nil {
		if errors.Is(interpret(err), ErrNotFound) {
			return nil, ErrTooManyFilters
		}
		return nil, fmt.Errorf("save filter: %w", interpret(err))
	}
	return &SavedFilter{ID: r.ID, Name: r.Name, Query: r.Query}, nil
}

// SavedFilterList returns the user's saved filters by name.
func SavedFilterList(ctx context.Context, db DBTX, userID int64) ([]SavedFilter, error) {
	rows, err := queries.SavedFilterList(ctx, db, userID)
	if err != nil {
		return nil, fmt.Errorf("list saved filters: %w", interpret(err))
	}
	out := make([]SavedFilter, len(rows))
	for i, r := range rows {
		out[i] = SavedFilter{ID: r.ID, Name: r.Name, Query: r.Query}
	}
	return out, nil
}

// SavedFilterDelete deletes one of the user's saved filters. Returns
// ErrNotFound when the user has no filter with that id.
func SavedFilterDelete(ctx context.Context, db DBTX, userID, id int64) error {
	n, err := queries.SavedFilterDelete(ctx, db, dbsqlc.SavedFilterDeleteParams{ID: id, UserID: userID})
	if err := oneRow(n, err); err != nil {
		return fmt.Errorf("delete saved filter: %w", err)
	}
	return nil
}
