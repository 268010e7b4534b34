// Package account manages console users: creation with hashed passwords,
// sign-in with rate limiting, API tokens, and disabling. Every sign-in,
// failure, user change and token creation is an audit event.
package account

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
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

// Limits on sign-in attempts within Window and the one before it (successful
// ones are taken back): a window boundary does not reset them.
// They apply per address and per (account, address), never per account
// alone, so that an attacker elsewhere cannot lock a real user out; behind a
// proxy the address is the client's (COUNTERSIGN_TRUSTED_PROXIES), and an
// IPv6 address counts as its /64 (addressKey).
const (
	Window          = 15 * time.Minute
	MaxPerAddress   = 20
	MaxPerAccountIP = 5
	MinPassword     = 10
	// MaxEmail is the longest address SMTP allows; MaxPassword bounds what
	// is hashed (bcrypt reads 72 bytes). Longer input is refused unrecorded.
	MaxEmail    = 254
	MaxPassword = 1024
	// MaxFailedEvents bounds the auth.login_failed events one Window writes,
	// whatever the addresses: an attacker with many addresses cannot grow
	// the append-only log without bound. Failures beyond it are counted and
	// summarised (recordFailure); they lock nobody out.
	MaxFailedEvents = 1000
)

// maxFailedEvents is MaxFailedEvents; tests lower it.
var maxFailedEvents = MaxFailedEvents

// failedKey counts every failed sign-in of a window in login_throttle.
const failedKey = "failed:all"

// addressKey is what the per-address limits count: an IPv4 address as it
// is, an IPv6 address as its /64, since one IPv6 client is usually given a
// whole /64 and could otherwise try from a fresh address each time. An
// IPv4-mapped IPv6 address is its IPv4 address.
func addressKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return ip
	}
	return p.String()
}

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
	if err := checkRole(role); err != nil {
		return nil, err
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
		_, err = audit.Append(ctx, tx, audit.Event{Actor: by, Subject: audit.UserSubject(u.ID),
			Details: audit.UserCreated{Email: u.Email, Role: u.Role}})
		return u, err
	})
}

// SignIn checks a password. Every attempt is counted before the password is
// checked, in one statement per key, so that parallel attempts cannot slip
// past the limits; a successful one is taken back. The caller gets
// ErrInvalid (input too long: nothing is recorded), ErrThrottled or
// ErrBadCredentials and nothing more.
func SignIn(ctx context.Context, pool *pgxpool.Pool, email, password, ip string) (*store.User, error) {
	email = strings.TrimSpace(email)
	if len(email) > MaxEmail || len(password) > MaxPassword {
		return nil, fmt.Errorf("%w: the email or password is too long", ErrInvalid)
	}
	if err := auditClosedWindows(ctx, pool); err != nil {
		return nil, err
	}
	addr := addressKey(ip)
	keys := []string{"ip:" + addr, "acct:" + strings.ToLower(email) + "|" + addr}
	counts, err := store.LoginAttemptCount(ctx, pool, keys, Window)
	if err != nil {
		return nil, err
	}
	if counts[0].Attempts > MaxPerAddress || counts[1].Attempts > MaxPerAccountIP {
		if err := recordThrottled(ctx, pool, addr, counts[0].WindowStart); err != nil {
			return nil, err
		}
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
		// The attempt is already counted; at most MaxPerAddress of these
		// per address and window reach the log, and MaxFailedEvents in all.
		if err := recordFailure(ctx, pool, email, ip, reason); err != nil {
			return nil, err
		}
		return nil, ErrBadCredentials
	}
	if err := store.LoginAttemptForgive(ctx, pool, keys, counts[0].WindowStart); err != nil {
		return nil, err
	}
	if _, err := audit.Append(ctx, pool, audit.Event{Actor: u.Email, Subject: audit.UserSubject(u.ID), Details: audit.AuthLogin{IP: ip}}); err != nil {
		return nil, err
	}
	return u, nil
}

// recordFailure audits a failed sign-in, unless this window already wrote
// maxFailedEvents of them: then the failure is only counted, and the window
// gets two summaries in their place, one at the first failure left out
// (complete: false), one with the total when the window closes
// (auditClosedWindows). The count is its own statement, outside any
// transaction, so that concurrent failures wait on its row only that long.
func recordFailure(ctx context.Context, pool *pgxpool.Pool, email, ip, reason string) error {
	n, start, err := store.LoginWindowCount(ctx, pool, failedKey, Window)
	if err != nil {
		return err
	}
	if n <= maxFailedEvents {
		_, err := audit.Append(ctx, pool, audit.Event{Actor: email, Subject: audit.Subject{Type: "user", ID: email},
			Details: audit.AuthLoginFailed{IP: ip, Reason: reason}})
		return err
	}
	left, err := store.LoginThrottledCount(ctx, pool, failedKey, start)
	if err != nil || left != 1 {
		return err
	}
	_, err = audit.Append(ctx, pool, failedSummary(start, left, false))
	return err
}

// failedSummary is the event for the failed sign-ins of a window that were
// counted but not written one by one.
func failedSummary(windowStart time.Time, count int, complete bool) audit.Event {
	return audit.Event{Actor: "anonymous", Subject: audit.Subject{Type: "window", ID: windowStart.UTC().Format(time.RFC3339)},
		Details: audit.AuthLoginFailed{FailureSummary: &audit.FailureSummary{Summary: true, Written: maxFailedEvents, Count: count,
			Complete: complete, WindowStart: windowStart.UTC(), WindowEnd: windowStart.Add(Window).UTC()}}}
}

// recordThrottled counts a refused attempt. Only the first refusal of an
// address in a window is audited at once; the total follows when the window
// closes (auditClosedWindows), so an anonymous client adds at most two
// events per address and window however often it tries.
func recordThrottled(ctx context.Context, pool *pgxpool.Pool, ip string, windowStart time.Time) error {
	return store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		n, err := store.LoginThrottledCount(ctx, tx, "ip:"+ip, windowStart)
		if err != nil || n != 1 {
			return err
		}
		_, err = audit.Append(ctx, tx, throttled(ip, windowStart, 1, false))
		return err
	})
}

// auditClosedWindows appends one event per address that was refused in a
// window that has ended, with the number of refusals, and deletes counters
// too old to matter.
func auditClosedWindows(ctx context.Context, pool *pgxpool.Pool) error {
	return store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		closed, err := store.LoginThrottleClose(ctx, tx, Window)
		if err != nil {
			return err
		}
		for _, c := range closed {
			if c.Key == failedKey {
				if _, err := audit.Append(ctx, tx, failedSummary(c.WindowStart, c.Throttled, true)); err != nil {
					return err
				}
				continue
			}
			ip, ok := strings.CutPrefix(c.Key, "ip:")
			if !ok {
				continue
			}
			if _, err := audit.Append(ctx, tx, throttled(ip, c.WindowStart, c.Throttled, true)); err != nil {
				return err
			}
		}
		return nil
	})
}

func throttled(ip string, windowStart time.Time, count int, complete bool) audit.Event {
	return audit.Event{Actor: "anonymous", Subject: audit.AddressSubject(ip), Details: audit.AuthLoginThrottled{IP: ip,
		WindowStart: windowStart.UTC(), WindowEnd: windowStart.Add(Window).UTC(), Count: count, Complete: complete}}
}

// SignOut ends every session of the user.
func SignOut(ctx context.Context, pool *pgxpool.Pool, u *store.User, ip string) error {
	return store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := store.UserEndSessions(ctx, tx, u.ID); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Actor: u.Email, Subject: audit.UserSubject(u.ID), Details: audit.AuthLogout{IP: ip}})
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
		_, err = audit.Append(ctx, tx, audit.Event{Actor: by, Subject: audit.UserSubject(u.ID),
			Details: audit.UserAccess{Email: u.Email, Disabled: disabled}})
		return err
	})
}

// SetRole changes a user's role and ends their sessions, so that the new
// rights apply from their next sign-in.
func SetRole(ctx context.Context, pool *pgxpool.Pool, email, role, by string) error {
	if err := checkRole(role); err != nil {
		return err
	}
	return store.WithTx(ctx, pool, func(ctx context.Context, tx pgx.Tx) error {
		u, err := store.UserGetByEmail(ctx, tx, email)
		if err != nil {
			return err
		}
		if err := store.UserSetRole(ctx, tx, u.ID, role); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Actor: by, Subject: audit.UserSubject(u.ID),
			Details: audit.UserRoleChanged{Email: u.Email, From: u.Role, To: vocab.Role(role)}})
		return err
	})
}

// checkRole returns ErrInvalid, listing the roles, unless role is one of them.
func checkRole(role string) error {
	if !vocab.Role(role).Valid() {
		return fmt.Errorf("%w: role must be one of %s", ErrInvalid, vocab.Join(vocab.Roles(), ", "))
	}
	return nil
}
