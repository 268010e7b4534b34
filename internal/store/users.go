package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// User is a console account.
type User struct {
	ID             int64     `json:"id"`
	Email          string    `json:"email"`
	Name           string    `json:"name"`
	Role           string    `json:"role"`
	PasswordHash   string    `json:"-"`
	Disabled       bool      `json:"disabled"`
	SessionVersion int       `json:"-"`
	CreatedAt      time.Time `json:"created_at"`
}

const userColumns = `id, email, name, role, password_hash, disabled, session_version, created_at`

func scanUser(row pgx.Row) (*User, error) {
	var u User
	if err := row.Scan(&u.ID, &u.Email, &u.Name, &u.Role, &u.PasswordHash, &u.Disabled, &u.SessionVersion, &u.CreatedAt); err != nil {
		return nil, interpret(err)
	}
	return &u, nil
}

// UserInsert creates a user. Returns ErrConflict when the email is taken.
func UserInsert(ctx context.Context, db DBTX, email, name, role, passwordHash string) (*User, error) {
	u, err := scanUser(db.QueryRow(ctx, `INSERT INTO users (email, name, role, password_hash) VALUES ($1, $2, $3, $4)
		RETURNING `+userColumns, email, name, role, passwordHash))
	if err != nil {
		return nil, fmt.Errorf("insert user: %w", interpret(err))
	}
	return u, nil
}

// UserGetByEmail returns a user by email, case-insensitively. Returns ErrNotFound.
func UserGetByEmail(ctx context.Context, db DBTX, email string) (*User, error) {
	u, err := scanUser(db.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE lower(email) = lower($1)`, email))
	if err != nil {
		return nil, fmt.Errorf("get user: %w", interpret(err))
	}
	return u, nil
}

// UserGet returns a user by id. Returns ErrNotFound.
func UserGet(ctx context.Context, db DBTX, id int64) (*User, error) {
	u, err := scanUser(db.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("get user: %w", interpret(err))
	}
	return u, nil
}

// UserList returns every user by email.
func UserList(ctx context.Context, db DBTX) ([]*User, error) {
	rows, err := db.Query(ctx, `SELECT `+userColumns+` FROM users ORDER BY lower(email)`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", interpret(err))
	}
	defer rows.Close()
	var out []*User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, interpret(rows.Err())
}

// UserSetDisabled disables or enables a user; disabling ends their sessions.
func UserSetDisabled(ctx context.Context, db DBTX, id int64, disabled bool) error {
	tag, err := db.Exec(ctx, `UPDATE users SET disabled = $2, session_version = session_version + 1, updated_at = now()
		WHERE id = $1`, id, disabled)
	if err != nil {
		return fmt.Errorf("disable user: %w", interpret(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// UserSetRole changes a user's role and ends their sessions.
func UserSetRole(ctx context.Context, db DBTX, id int64, role string) error {
	tag, err := db.Exec(ctx, `UPDATE users SET role = $2, session_version = session_version + 1, updated_at = now()
		WHERE id = $1`, id, role)
	if err != nil {
		return fmt.Errorf("set role: %w", interpret(err))
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// UserEndSessions invalidates every session the user has.
func UserEndSessions(ctx context.Context, db DBTX, id int64) error {
	_, err := db.Exec(ctx, `UPDATE users SET session_version = session_version + 1, updated_at = now() WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("end sessions: %w", interpret(err))
	}
	return nil
}

// TokenInsert stores an API token's hash.
func TokenInsert(ctx context.Context, db DBTX, userID int64, name, hash string) (int64, error) {
	var id int64
	err := db.QueryRow(ctx, `INSERT INTO api_tokens (user_id, name, token_hash) VALUES ($1, $2, $3) RETURNING id`,
		userID, name, hash).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("insert token: %w", interpret(err))
	}
	return id, nil
}

// TokenUser returns the enabled user owning an unrevoked token hash and marks
// the token used. Returns ErrNotFound.
func TokenUser(ctx context.Context, db DBTX, hash string) (*User, error) {
	u, err := scanUser(db.QueryRow(ctx, `
		WITH t AS (
			UPDATE api_tokens SET last_used_at = now()
			WHERE token_hash = $1 AND revoked_at IS NULL
			RETURNING user_id
		)
		SELECT `+prefixed("u.", userColumns)+` FROM users u JOIN t ON t.user_id = u.id WHERE NOT u.disabled`, hash))
	if err != nil {
		return nil, fmt.Errorf("token user: %w", interpret(err))
	}
	return u, nil
}

// LoginFailureInsert records a failed sign-in.
func LoginFailureInsert(ctx context.Context, db DBTX, email, ip string) error {
	_, err := db.Exec(ctx, `INSERT INTO login_failures (email, ip) VALUES ($1, $2)`, email, ip)
	if err != nil {
		return fmt.Errorf("record login failure: %w", interpret(err))
	}
	return nil
}

// LoginFailureCounts returns the failures since t from ip, and for email from ip.
func LoginFailureCounts(ctx context.Context, db DBTX, email, ip string, since time.Time) (byIP, byAccount int, err error) {
	err = db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE lower(email) = lower($2))
		FROM login_failures WHERE ip = $1 AND at >= $3`, ip, email, since).Scan(&byIP, &byAccount)
	if err != nil {
		return 0, 0, fmt.Errorf("count login failures: %w", interpret(err))
	}
	return byIP, byAccount, nil
}

// SettingGetOrCreate returns the value stored under key, storing make()'s
// result first when there is none. Concurrent callers all get the first value.
func SettingGetOrCreate(ctx context.Context, db DBTX, key string, make func() []byte) ([]byte, error) {
	var v []byte
	err := db.QueryRow(ctx, `WITH ins AS (
			INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING value
		) SELECT value FROM ins UNION ALL SELECT value FROM settings WHERE key = $1 LIMIT 1`, key, make()).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		// Lost a race with a concurrent insert that committed after our snapshot.
		err = db.QueryRow(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v)
	}
	if err != nil {
		return nil, fmt.Errorf("setting %s: %w", key, interpret(err))
	}
	return v, nil
}
