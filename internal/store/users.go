package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/vocab"
)

// User is a console account.
type User struct {
	ID             int64      `json:"id"`
	Email          string     `json:"email"`
	Name           string     `json:"name"`
	Role           vocab.Role `json:"role"`
	PasswordHash   string     `json:"-"`
	Disabled       bool       `json:"disabled"`
	SessionVersion int        `json:"-"`
	CreatedAt      time.Time  `json:"created_at"`
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

// LoginAttempt is one key's count: the attempts of the current window and of
// the one before, so that a window boundary does not reset a limit.
type LoginAttempt struct {
	Key         string
	WindowStart time.Time
	Attempts    int
}

// LoginAttemptCount records an attempt for each key in the window that holds
// now and returns the new counts (this window and the previous), in the order
// of keys. Each increment is a single upsert, so parallel callers see
// distinct counts: the check and the record cannot be separated. Pass keys in
// a fixed order (address first) so that concurrent callers lock rows in the
// same order.
func LoginAttemptCount(ctx context.Context, db DBTX, keys []string, window time.Duration) ([]LoginAttempt, error) {
	rows, err := db.Query(ctx, `WITH up AS (
			INSERT INTO login_throttle (key, window_start, attempts)
			SELECT k, date_bin($2::interval, now(), 'epoch'::timestamptz), 1 FROM unnest($1::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n
			ON CONFLICT (key, window_start) DO UPDATE SET attempts = login_throttle.attempts + 1
			RETURNING key, window_start, attempts
		)
		SELECT up.key, up.window_start, up.attempts + coalesce(prev.attempts, 0)
		FROM up LEFT JOIN login_throttle prev ON prev.key = up.key AND prev.window_start = up.window_start - $2::interval`, keys, window)
	if err != nil {
		return nil, fmt.Errorf("count login attempt: %w", interpret(err))
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LoginAttempt, error) {
		var a LoginAttempt
		return a, r.Scan(&a.Key, &a.WindowStart, &a.Attempts)
	})
	if err != nil {
		return nil, fmt.Errorf("count login attempt: %w", interpret(err))
	}
	out := make([]LoginAttempt, len(keys))
	for i, k := range keys {
		for _, a := range got {
			if a.Key == k {
				out[i] = a
			}
		}
	}
	return out, nil
}

// LoginAttemptForgive takes back one attempt of each key in the window: a
// successful sign-in does not count against its address.
func LoginAttemptForgive(ctx context.Context, db DBTX, keys []string, windowStart time.Time) error {
	_, err := db.Exec(ctx, `UPDATE login_throttle SET attempts = greatest(attempts - 1, 0)
		WHERE key = ANY($1) AND window_start = $2`, keys, windowStart)
	if err != nil {
		return fmt.Errorf("forgive login attempt: %w", interpret(err))
	}
	return nil
}

// LoginWindowCount adds one to key's attempts in the current window and
// returns the window's count, this one included, and when the window started.
// Unlike LoginAttemptCount it leaves the previous window out: it bounds what
// one window writes, not what one client tries.
func LoginWindowCount(ctx context.Context, db DBTX, key string, window time.Duration) (int, time.Time, error) {
	var n int
	var start time.Time
	err := db.QueryRow(ctx, `INSERT INTO login_throttle (key, window_start, attempts)
		VALUES ($1, date_bin($2::interval, now(), 'epoch'::timestamptz), 1)
		ON CONFLICT (key, window_start) DO UPDATE SET attempts = login_throttle.attempts + 1
		RETURNING attempts, window_start`, key, window).Scan(&n, &start)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count login window: %w", interpret(err))
	}
	return n, start, nil
}

// LoginThrottledCount records a refused attempt against key in the window and
// returns how many there were, this one included.
func LoginThrottledCount(ctx context.Context, db DBTX, key string, windowStart time.Time) (int, error) {
	var n int
	err := db.QueryRow(ctx, `UPDATE login_throttle SET throttled = throttled + 1
		WHERE key = $1 AND window_start = $2 RETURNING throttled`, key, windowStart).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count throttled login: %w", interpret(err))
	}
	return n, nil
}

// LoginThrottleClosed is a finished window in which attempts were refused.
type LoginThrottleClosed struct {
	Key         string
	WindowStart time.Time
	Throttled   int
}

// LoginThrottleClose returns, once each, the windows that ended with refused
// attempts, marking them reported, and deletes the rows of windows too old to
// count (before the previous one). Row locks make each window go to one
// caller only.
func LoginThrottleClose(ctx context.Context, db DBTX, window time.Duration) ([]LoginThrottleClosed, error) {
	rows, err := db.Query(ctx, `WITH cur AS (SELECT date_bin($1::interval, now(), 'epoch'::timestamptz) AS start),
		gone AS (
			DELETE FROM login_throttle USING cur WHERE window_start < cur.start - $1::interval
			RETURNING key, window_start, throttled, reported
		),
		done AS (
			UPDATE login_throttle SET reported = true FROM cur
			WHERE window_start >= cur.start - $1::interval AND window_start < cur.start AND throttled > 0 AND NOT reported
			RETURNING key, window_start, throttled
		)
		SELECT key, window_start, throttled FROM gone WHERE throttled > 0 AND NOT reported
		UNION ALL SELECT key, window_start, throttled FROM done`, window)
	if err != nil {
		return nil, fmt.Errorf("close login windows: %w", interpret(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LoginThrottleClosed, error) {
		var c LoginThrottleClosed
		return c, r.Scan(&c.Key, &c.WindowStart, &c.Throttled)
	})
	if err != nil {
		return nil, fmt.Errorf("close login windows: %w", interpret(err))
	}
	return out, nil
}

// SettingGetOrCreate returns the value stored under key, storing make()'s
// result first when there is none. Concurrent callers all get the first value.
// Returns ErrPermission when the role may not read settings.
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
