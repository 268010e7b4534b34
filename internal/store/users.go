package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/countersign/countersign/internal/store/dbsqlc"

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

// userFromInternal converts a generated row to the exported User.
func userFromInternal(u *dbsqlc.User) *User {
	return &User{ID: u.ID, Email: u.Email, Name: u.Name, Role: vocab.Role(u.Role), PasswordHash: u.PasswordHash,
		Disabled: u.Disabled, SessionVersion: u.SessionVersion, CreatedAt: u.CreatedAt}
}

// userResult converts the outcome of a query returning one user.
func userResult(u *dbsqlc.User, err error) (*User, error) {
	if err != nil {
		return nil, interpret(err)
	}
	return userFromInternal(u), nil
}

// UserInsert creates a user. Returns ErrConflict when the email is taken.
func UserInsert(ctx context.Context, db DBTX, email, name, role, passwordHash string) (*User, error) {
	u, err := userResult(queries.UserInsert(ctx, db, dbsqlc.UserInsertParams{Email: email, Name: name, Role: role, PasswordHash: passwordHash}))
	if err != nil {
		return nil, fmt.Errorf("insert user: %w", err)
	}
	return u, nil
}

// UserGetByEmail returns a user by email, case-insensitively. Returns ErrNotFound.
func UserGetByEmail(ctx context.Context, db DBTX, email string) (*User, error) {
	u, err := userResult(queries.UserGetByEmail(ctx, db, email))
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// UserGet returns a user by id. Returns ErrNotFound.
func UserGet(ctx context.Context, db DBTX, id int64) (*User, error) {
	u, err := userResult(queries.UserGet(ctx, db, id))
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// UserList returns every user by email.
func UserList(ctx context.Context, db DBTX) ([]*User, error) {
	us, err := queries.UserList(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", interpret(err))
	}
	return convertAll(us, userFromInternal), nil
}

// UserSetDisabled disables or enables a user; disabling ends their sessions.
// Returns ErrNotFound when there is no such user.
func UserSetDisabled(ctx context.Context, db DBTX, id int64, disabled bool) error {
	if err := oneRow(queries.UserSetDisabled(ctx, db, dbsqlc.UserSetDisabledParams{ID: id, Disabled: disabled})); err != nil {
		return fmt.Errorf("disable user: %w", err)
	}
	return nil
}

// UserSetRole changes a user's role and ends their sessions. Returns
// ErrNotFound when there is no such user.
func UserSetRole(ctx context.Context, db DBTX, id int64, role string) error {
	if err := oneRow(queries.UserSetRole(ctx, db, dbsqlc.UserSetRoleParams{ID: id, Role: role})); err != nil {
		return fmt.Errorf("set role: %w", err)
	}
	return nil
}

// UserEndSessions invalidates every session the user has. Returns
// ErrNotFound when there is no such user.
func UserEndSessions(ctx context.Context, db DBTX, id int64) error {
	if err := oneRow(queries.UserEndSessions(ctx, db, id)); err != nil {
		return fmt.Errorf("end sessions: %w", err)
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
	got, err := queries.LoginAttemptCount(ctx, db, dbsqlc.LoginAttemptCountParams{Keys: keys, WindowLength: interval(window)})
	if err != nil {
		return nil, fmt.Errorf("count login attempt: %w", interpret(err))
	}
	out := make([]LoginAttempt, len(keys))
	for i, k := range keys {
		for _, a := range got {
			if a.Key == k {
				out[i] = LoginAttempt{Key: a.Key, WindowStart: a.WindowStart, Attempts: a.Attempts}
			}
		}
	}
	return out, nil
}

// interval is d as a PostgreSQL interval.
func interval(d time.Duration) pgtype.Interval {
	return pgtype.Interval{Microseconds: d.Microseconds(), Valid: true}
}

// LoginAttemptForgive takes back one attempt of each key in the window: a
// successful sign-in does not count against its address.
func LoginAttemptForgive(ctx context.Context, db DBTX, keys []string, windowStart time.Time) error {
	if err := queries.LoginAttemptForgive(ctx, db, dbsqlc.LoginAttemptForgiveParams{Keys: keys, WindowStart: windowStart}); err != nil {
		return fmt.Errorf("forgive login attempt: %w", interpret(err))
	}
	return nil
}

// LoginWindowCount adds one to key's attempts in the current window and
// returns the window's count, this one included, and when the window started.
// Unlike LoginAttemptCount it leaves the previous window out: it bounds what
// one window writes, not what one client tries.
func LoginWindowCount(ctx context.Context, db DBTX, key string, window time.Duration) (int, time.Time, error) {
	r, err := queries.LoginWindowCount(ctx, db, dbsqlc.LoginWindowCountParams{Key: key, WindowLength: interval(window)})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("count login window: %w", interpret(err))
	}
	return r.Attempts, r.WindowStart, nil
}

// LoginThrottledCount records a refused attempt against key in the window and
// returns how many there were, this one included.
func LoginThrottledCount(ctx context.Context, db DBTX, key string, windowStart time.Time) (int, error) {
	n, err := queries.LoginThrottledCount(ctx, db, dbsqlc.LoginThrottledCountParams{Key: key, WindowStart: windowStart})
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
	rows, err := queries.LoginThrottleClose(ctx, db, interval(window))
	if err != nil {
		return nil, fmt.Errorf("close login windows: %w", interpret(err))
	}
	out := []LoginThrottleClosed{}
	for _, r := range rows {
		out = append(out, LoginThrottleClosed{Key: r.Key, WindowStart: r.WindowStart, Throttled: r.Throttled})
	}
	return out, nil
}

// SettingGetOrCreate returns the value stored under key, storing make()'s
// result first when there is none. Concurrent callers all get the first value.
// Returns ErrPermission when the role may not read settings.
func SettingGetOrCreate(ctx context.Context, db DBTX, key string, make func() []byte) ([]byte, error) {
	v, err := queries.SettingGetOrCreate(ctx, db, dbsqlc.SettingGetOrCreateParams{Key: key, Value: make()})
	if errors.Is(err, pgx.ErrNoRows) {
		// Lost a race with a concurrent insert that committed after our snapshot.
		v, err = queries.SettingGet(ctx, db, key)
	}
	if err != nil {
		return nil, fmt.Errorf("setting %s: %w", key, interpret(err))
	}
	return v, nil
}
