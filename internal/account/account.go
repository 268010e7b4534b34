// Package account manages console users: creation with hashed passwords,
// sign-in with rate limiting, API tokens, and disabling. Every sign-in,
// failure, user change and token creation is an audit event.
package account

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
)

var (
	// ErrInvalid is returned for bad user input (email, role, short password).
	ErrInvalid = errors.New("invalid")
	// ErrBadCredentials is returned for a wrong email or password: which one is not said.
	ErrBadCredentials = errors.New("wrong email or password")
	// ErrThrottled is returned when too many sign-ins failed recently.
	ErrThrottled = errors.New("too many failed sign-ins from your address; wait 15 minutes and try again")
	// ErrExists is returned when the email is taken.
	ErrExists = errors.New("a user with that email exists")
)

// Limits on failed sign-ins within Window. They apply per address and per
// (account, address), never per account alone, so that an attacker elsewhere
// cannot lock a real user out.
const (
	Window          = 15 * time.Minute
	MaxPerAddress   = 20
	MaxPerAccountIP = 5
	MinPassword     = 10
)

// dummyHash is compared against when the account does not exist, so that a
// missing account takes as long as a wrong password. It is made on first use:
// a bcrypt hash costs tens of milliseconds that no other command should pay.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("countersign-timing-equalizer"), bcrypt.DefaultCost)
	return h
})

// Create adds a user, recording who did it.
func Create(ctx context.Context, pool *pgxpool.Pool, email, name, role, password, by string) (*store.User, error) {
	email = strings.TrimSpace(email)
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return nil, fmt.Errorf("%w: %q is not an email address", ErrInvalid, email)
	}
	name = strings.TrimSpace(name)
	if name == "" {
		return nil, fmt.Errorf("%w: a name is required", ErrInvalid)
	}
	if !slices.Contains(policy.Roles, role) {
		return nil, fmt.Errorf("%w: role must be one of %s", ErrInvalid, strings.Join(policy.Roles, ", "))
	}
	if len(password) < MinPassword {
		return nil, fmt.Errorf("%w: the password must have at least %d characters", ErrInvalid, MinPassword)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	return store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.User, error) {
		u, err := store.UserInsert(ctx, tx, email, name, role, string(hash))
		if errors.Is(err, store.ErrConflict) {
			return nil, ErrExists
		} else if err != nil {
			return nil, err
		}
		_, err = store.AuditAppend(ctx, tx, by, "user.created", "user", strconv.FormatInt(u.ID, 10), nil,
			map[string]any{"email": u.Email, "role": u.Role})
		return u, err
	})
}

// SignIn checks a password. Failures are recorded and rate limited; the
// caller gets ErrThrottled or ErrBadCredentials and nothing more.
func SignIn(ctx context.Context, pool *pgxpool.Pool, email, password, ip string) (*store.User, error) {
	email = strings.TrimSpace(email)
	byIP, byAccount, err := store.LoginFailureCounts(ctx, pool, email, ip, time.Now().Add(-Window))
	if err != nil {
		return nil, err
	}
	if byIP >= MaxPerAddress || byAccount >= MaxPerAccountIP {
		_ = audit(ctx, pool, email, "auth.login_throttled", "user", email, map[string]any{"ip": ip})
		return nil, ErrThrottled
	}
	u, err := store.UserGetByEmail(ctx, pool, email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	var hash []byte
	if u != nil {
		hash = []byte(u.PasswordHash)
	} else {
		hash = dummyHash()
	}
	ok := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	if u == nil || !ok || u.Disabled {
		reason := "wrong password"
		switch {
		case u == nil:
			reason = "no such user"
		case u.Disabled && ok:
			reason = "user disabled"
		}
		if err := store.LoginFailureInsert(ctx, pool, email, ip); err != nil {
			return nil, err
		}
		if err := audit(ctx, pool, email, "auth.login_failed", "user", email, map[string]any{"ip": ip, "reason": reason}); err != nil {
			return nil, err
		}
		return nil, ErrBadCredentials
	}
	if err := audit(ctx, pool, u.Email, "auth.login", "user", strconv.FormatInt(u.ID, 10), map[string]any{"ip": ip}); err != nil {
		return nil, err
	}
	return u, nil
}

// SignOut ends every session of the user.
func SignOut(ctx context.Context, pool *pgxpool.Pool, u *store.User, ip string) error {
	return store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := store.UserEndSessions(ctx, tx, u.ID); err != nil {
			return err
		}
		_, err := store.AuditAppend(ctx, tx, u.Email, "auth.logout", "user", strconv.FormatInt(u.ID, 10), nil, map[string]any{"ip": ip})
		return err
	})
}

// SetDisabled disables (ending every session) or re-enables a user.
func SetDisabled(ctx context.Context, pool *pgxpool.Pool, email string, disabled bool, by string) error {
	return store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		u, err := store.UserGetByEmail(ctx, tx, email)
		if err != nil {
			return err
		}
		if err := store.UserSetDisabled(ctx, tx, u.ID, disabled); err != nil {
			return err
		}
		kind := "user.enabled"
		if disabled {
			kind = "user.disabled"
		}
		_, err = store.AuditAppend(ctx, tx, by, kind, "user", strconv.FormatInt(u.ID, 10), nil, map[string]any{"email": u.Email})
		return err
	})
}

func audit(ctx context.Context, pool *pgxpool.Pool, actor, kind, subjectType, subjectID string, details any) error {
	_, err := store.AuditAppend(ctx, pool, actor, kind, subjectType, subjectID, nil, details)
	return err
}

// SetRole changes a user's role and ends their sessions, so that the new
// rights apply from their next sign-in.
func SetRole(ctx context.Context, pool *pgxpool.Pool, email, role, by string) error {
	if !slices.Contains(policy.Roles, role) {
		return fmt.Errorf("%w: role must be one of %s", ErrInvalid, strings.Join(policy.Roles, ", "))
	}
	return store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		u, err := store.UserGetByEmail(ctx, tx, email)
		if err != nil {
			return err
		}
		if err := store.UserSetRole(ctx, tx, u.ID, role); err != nil {
			return err
		}
		_, err = store.AuditAppend(ctx, tx, by, "user.role_changed", "user", strconv.FormatInt(u.ID, 10), nil,
			map[string]any{"email": u.Email, "from": u.Role, "to": role})
		return err
	})
}
