package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"
)

// Token is an API token as admins see it: never its secret.
type Token struct {
	ID         int64      `json:"-"`
	PublicID   string     `json:"id"` // the handle shown to admins: cs_ and the secret's first 8 characters
	UserID     int64      `json:"-"`
	UserEmail  string     `json:"user"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	RevokedAt  *time.Time `json:"revoked_at"`
	RevokedBy  *string    `json:"revoked_by"`
	// CallbackSecret signs the callbacks of the token's approvals. It is
	// set only on the token TokenInsert returns: it is shown once, at creation.
	CallbackSecret []byte `json:"-"`
}

// Allows reports whether the token carries scope.
func (t *Token) Allows(scope string) bool { return slices.Contains(t.Scopes, scope) }

// Expired reports whether the token's expiry has passed at now.
func (t *Token) Expired(now time.Time) bool { return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) }

// tokenFromInternal converts a generated row, with its user's email, to
// the exported Token.
func tokenFromInternal(t *dbsqlc.ApiToken, email string) *Token {
	return &Token{ID: t.ID, PublicID: t.PublicID, UserID: t.UserID, UserEmail: email, Name: t.Name, Scopes: t.Scopes,
		CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt, RevokedBy: t.RevokedBy}
}

// TokenInsertParams are a new token's fields.
type TokenInsertParams struct {
	UserID    int64
	PublicID  string
	Name      string
	Hash      string
	Scopes    []string
	ExpiresAt *time.Time
	// CallbackSecret is 32 random bytes.
	CallbackSecret []byte
}

// TokenInsert stores an API token's hash. Returns ErrConflict when the public
// id or the hash is taken, ErrNotFound when the user does not exist.
func TokenInsert(ctx context.Context, db DBTX, p TokenInsertParams) (*Token, error) {
	t, err := queries.TokenInsert(ctx, db, dbsqlc.TokenInsertParams{UserID: p.UserID, PublicID: p.PublicID,
		Name: p.Name, TokenHash: p.Hash, Scopes: p.Scopes, ExpiresAt: p.ExpiresAt, CallbackSecret: p.CallbackSecret})
	if err != nil {
		return nil, fmt.Errorf("insert token: %w", interpret(err))
	}
	u, err := queries.UserGet(ctx, db, t.UserID)
	if err != nil {
		return nil, fmt.Errorf("insert token: %w", interpret(err))
	}
	tok := tokenFromInternal(t, u.Email)
	tok.CallbackSecret = t.CallbackSecret
	return tok, nil
}

// TokenGetByHash returns the token with a secret's hash, whatever its state,
// and its user. Returns ErrNotFound.
func TokenGetByHash(ctx context.Context, db DBTX, hash string) (*Token, *User, error) {
	r, err := queries.TokenGetByHash(ctx, db, hash)
	if err != nil {
		return nil, nil, fmt.Errorf("get token: %w", interpret(err))
	}
	return tokenFromInternal(&r.ApiToken, r.User.Email), userFromInternal(&r.User), nil
}

// TokenGet returns a token by its public id, locking it for the rest of the
// transaction. Returns ErrNotFound.
func TokenGet(ctx context.Context, db DBTX, publicID string) (*Token, error) {
	r, err := queries.TokenGetForUpdate(ctx, db, publicID)
	if err != nil {
		return nil, fmt.Errorf("get token: %w", interpret(err))
	}
	return tokenFromInternal(&r.ApiToken, r.UserEmail), nil
}

// TokenList returns tokens newest first: all of them, or those of the user
// with email when it is not empty.
func TokenList(ctx context.Context, db DBTX, email string) ([]*Token, error) {
	rows, err := queries.TokenList(ctx, db, email)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", interpret(err))
	}
	out := []*Token{}
	for _, r := range rows {
		out = append(out, tokenFromInternal(&r.ApiToken, r.UserEmail))
	}
	return out, nil
}

// TokenRevoke marks a token revoked by by at now, unless it already is.
// Returns ErrNotFound when there is no such unrevoked token.
func TokenRevoke(ctx context.Context, db DBTX, id int64, by string, now time.Time) error {
	if err := oneRow(queries.TokenRevoke(ctx, db, dbsqlc.TokenRevokeParams{ID: id, RevokedBy: &by, RevokedAt: &now})); err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	return nil
}

// TokenTouch records that a token was used at now, unless it was recorded
// less than every ago: a busy agent costs one write a minute, not one per call.
func TokenTouch(ctx context.Context, db DBTX, id int64, now time.Time, every time.Duration) error {
	if err := queries.TokenTouch(ctx, db, dbsqlc.TokenTouchParams{ID: id, Now: now, TouchedBefore: now.Add(-every)}); err != nil {
		return fmt.Errorf("touch token: %w", interpret(err))
	}
	return nil
}
