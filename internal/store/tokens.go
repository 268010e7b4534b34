package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
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
}

// Allows reports whether the token carries scope.
func (t *Token) Allows(scope string) bool { return slices.Contains(t.Scopes, scope) }

// Expired reports whether the token's expiry has passed at now.
func (t *Token) Expired(now time.Time) bool { return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) }

const tokenColumns = `t.id, t.public_id, t.user_id, u.email, t.name, t.scopes, t.created_at, t.expires_at,
	t.last_used_at, t.revoked_at, t.revoked_by`

func scanToken(row pgx.Row) (*Token, error) {
	var t Token
	if err := row.Scan(&t.ID, &t.PublicID, &t.UserID, &t.UserEmail, &t.Name, &t.Scopes, &t.CreatedAt, &t.ExpiresAt,
		&t.LastUsedAt, &t.RevokedAt, &t.RevokedBy); err != nil {
		return nil, interpret(err)
	}
	return &t, nil
}

// TokenInsertParams are a new token's fields.
type TokenInsertParams struct {
	UserID    int64
	PublicID  string
	Name      string
	Hash      string
	Scopes    []string
	ExpiresAt *time.Time
}

// TokenInsert stores an API token's hash. Returns ErrConflict when the public
// id or the hash is taken.
func TokenInsert(ctx context.Context, db DBTX, p TokenInsertParams) (*Token, error) {
	t, err := scanToken(db.QueryRow(ctx, `WITH t AS (
			INSERT INTO api_tokens (user_id, public_id, name, token_hash, scopes, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING *
		) SELECT `+tokenColumns+` FROM t JOIN users u ON u.id = t.user_id`,
		p.UserID, p.PublicID, p.Name, p.Hash, p.Scopes, p.ExpiresAt))
	if err != nil {
		return nil, fmt.Errorf("insert token: %w", interpret(err))
	}
	return t, nil
}

// TokenGetByHash returns the token with a secret's hash, whatever its state,
// and its user. Returns ErrNotFound.
func TokenGetByHash(ctx context.Context, db DBTX, hash string) (*Token, *User, error) {
	row := db.QueryRow(ctx, `SELECT `+tokenColumns+`, `+prefixed("u.", userColumns)+`
		FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1`, hash)
	var t Token
	var u User
	err := row.Scan(&t.ID, &t.PublicID, &t.UserID, &t.UserEmail, &t.Name, &t.Scopes, &t.CreatedAt, &t.ExpiresAt,
		&t.LastUsedAt, &t.RevokedAt, &t.RevokedBy,
		&u.ID, &u.Email, &u.Name, &u.Role, &u.PasswordHash, &u.Disabled, &u.SessionVersion, &u.CreatedAt)
	if err != nil {
		return nil, nil, fmt.Errorf("get token: %w", interpret(err))
	}
	return &t, &u, nil
}

// TokenGet returns a token by its public id, locking it for the rest of the
// transaction. Returns ErrNotFound.
func TokenGet(ctx context.Context, db DBTX, publicID string) (*Token, error) {
	t, err := scanToken(db.QueryRow(ctx, `SELECT `+tokenColumns+`
		FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.public_id = $1 FOR UPDATE OF t`, publicID))
	if err != nil {
		return nil, fmt.Errorf("get token: %w", interpret(err))
	}
	return t, nil
}

// TokenList returns tokens newest first: all of them, or those of the user
// with email when it is not empty.
func TokenList(ctx context.Context, db DBTX, email string) ([]*Token, error) {
	rows, err := db.Query(ctx, `SELECT `+tokenColumns+`
		FROM api_tokens t JOIN users u ON u.id = t.user_id
		WHERE $1 = '' OR lower(u.email) = lower($1)
		ORDER BY t.created_at DESC, t.id DESC`, email)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", interpret(err))
	}
	defer rows.Close()
	out := []*Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", interpret(err))
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", interpret(err))
	}
	return out, nil
}

// TokenRevoke marks a token revoked by by at now, unless it already is.
// Returns ErrNotFound when there is no such unrevoked token.
func TokenRevoke(ctx context.Context, db DBTX, id int64, by string, now time.Time) error {
	tag, err := db.Exec(ctx, `UPDATE api_tokens SET revoked_at = $3, revoked_by = $2 WHERE id = $1 AND revoked_at IS NULL`,
		id, by, now)
	if err != nil {
		return fmt.Errorf("revoke token: %w", interpret(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// TokenTouch records that a token was used at now, unless it was recorded
// less than every ago: a busy agent costs one write a minute, not one per call.
func TokenTouch(ctx context.Context, db DBTX, id int64, now time.Time, every time.Duration) error {
	_, err := db.Exec(ctx, `UPDATE api_tokens SET last_used_at = $2
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $3)`, id, now, now.Add(-every))
	if err != nil {
		return fmt.Errorf("touch token: %w", interpret(err))
	}
	return nil
}
