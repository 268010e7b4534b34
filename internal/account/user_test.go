package account_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/factory"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/vocab"
)

// kinds returns the kinds of the audit events about subject, oldest first.
func kinds(t *testing.T, db store.DBTX, subjectID string) []string {
	t.Helper()
	var out []string
	rows, err := db.Query(context.Background(), `SELECT kind FROM audit_events WHERE subject_id = $1 ORDER BY id`, subjectID)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		out = append(out, k)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		u, err := account.Create(ctx, pool, "  bea@example.com ", " Bea ", "approver", password, "admin@example.com")
		require.NoError(t, err)
		require.Equal(t, "bea@example.com", u.Email)
		require.Equal(t, "Bea", u.Name)
		require.Equal(t, vocab.RoleApprover, u.Role)
		require.NotContains(t, u.PasswordHash, password)
		require.Equal(t, []string{"user.created"}, kinds(t, pool, idOf(u.ID)))
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct{ email, name, role, password, says string }{
			{"not an email", "N", "reviewer", password, "not an email address"},
			{"Nell <nell@example.com>", "N", "reviewer", password, "not an email address"},
			{"nell@example.com", " ", "reviewer", password, "a name is required"},
			{"nell@example.com", "N", "owner", password, "role must be one of"},
			{"nell@example.com", "N", "reviewer", "short", "at least 10 characters"},
		} {
			_, err := account.Create(ctx, pool, tc.email, tc.name, tc.role, tc.password, "setup")
			require.ErrorIs(t, err, account.ErrInvalid)
			require.ErrorContains(t, err, tc.says)
		}
		_, err := store.UserGetByEmail(ctx, pool, "nell@example.com")
		require.ErrorIs(t, err, store.ErrNotFound, "nothing was written")
	})

	t.Run("Exists", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, nil)
		_, err := account.Create(ctx, pool, strings.ToUpper(u.Email), "Other", "reviewer", password, "setup")
		require.ErrorIs(t, err, account.ErrExists)
	})
}

func TestSignInAndOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, nil)
		got, err := account.SignIn(ctx, pool, " "+strings.ToUpper(u.Email)+" ", factory.Password, "192.0.2.10")
		require.NoError(t, err)
		require.Equal(t, u.ID, got.ID)
		require.NoError(t, account.SignOut(ctx, pool, got, "192.0.2.10"))
		after, err := store.UserGet(ctx, pool, u.ID)
		require.NoError(t, err)
		require.Greater(t, after.SessionVersion, u.SessionVersion, "signing out ends every session")
		require.Equal(t, []string{"user.created", "auth.login", "auth.logout"}, kinds(t, pool, idOf(u.ID)))
	})

	t.Run("WrongPasswordAndUnknownUserLookAlike", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, nil)
		_, wrong := account.SignIn(ctx, pool, u.Email, "not-the-password", "192.0.2.11")
		_, unknown := account.SignIn(ctx, pool, "nobody@example.com", factory.Password, "192.0.2.11")
		require.ErrorIs(t, wrong, account.ErrBadCredentials)
		require.ErrorIs(t, unknown, account.ErrBadCredentials)
		require.Equal(t, wrong.Error(), unknown.Error())
	})

	t.Run("Disabled", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, nil)
		require.NoError(t, account.SetDisabled(ctx, pool, u.Email, true, "admin@example.com"))
		_, err := account.SignIn(ctx, pool, u.Email, factory.Password, "192.0.2.12")
		require.ErrorIs(t, err, account.ErrBadCredentials, "a disabled user cannot sign in")
		disabled, err := store.UserGet(ctx, pool, u.ID)
		require.NoError(t, err)
		require.Greater(t, disabled.SessionVersion, u.SessionVersion, "disabling ends every session")

		require.NoError(t, account.SetDisabled(ctx, pool, u.Email, false, "admin@example.com"))
		_, err = account.SignIn(ctx, pool, u.Email, factory.Password, "192.0.2.12")
		require.NoError(t, err)
		require.Equal(t, []string{"user.created", "user.disabled", "user.enabled", "auth.login"}, kinds(t, pool, idOf(u.ID)))
		require.Equal(t, []string{"auth.login_failed"}, kinds(t, pool, u.Email), "a failed sign-in names what was typed")
	})

	t.Run("UnknownUserCannotBeDisabled", func(t *testing.T) {
		t.Parallel()
		require.ErrorIs(t, account.SetDisabled(ctx, pool, "nobody@example.com", true, "admin"), store.ErrNotFound)
	})
}

func TestSetRole(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, nil)
		require.NoError(t, account.SetRole(ctx, pool, u.Email, "admin", "root@example.com"))
		after, err := store.UserGet(ctx, pool, u.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RoleAdmin, after.Role)
		require.Greater(t, after.SessionVersion, u.SessionVersion, "new rights apply from the next sign-in")
		require.Equal(t, []string{"user.created", "user.role_changed"}, kinds(t, pool, idOf(u.ID)))
	})

	t.Run("UnknownRole", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, nil)
		require.ErrorIs(t, account.SetRole(ctx, pool, u.Email, "owner", "root"), account.ErrInvalid)
	})

	t.Run("UnknownUser", func(t *testing.T) {
		t.Parallel()
		require.ErrorIs(t, account.SetRole(ctx, pool, "nobody@example.com", "admin", "root"), store.ErrNotFound)
	})
}

func TestTokens(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

	t.Run("ExpiryCountsFromTheGivenClock", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, nil)
		tok, secret, err := account.CreateToken(ctx, pool, account.TokenParams{Email: u.Email, Name: "ci",
			Scopes: []string{"runs:read"}, ExpiresIn: time.Hour, By: "admin", Now: now})
		require.NoError(t, err)
		require.Equal(t, now.Add(time.Hour), tok.ExpiresAt.UTC())
		_, _, err = account.TokenUser(ctx, pool, secret, now.Add(59*time.Minute))
		require.NoError(t, err)
		_, _, err = account.TokenUser(ctx, pool, secret, now.Add(time.Hour))
		require.ErrorIs(t, err, account.ErrTokenRefused)
		require.ErrorContains(t, err, "expired")
	})

	t.Run("ListAndRevoke", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, nil)
		tok, secret, err := account.CreateToken(ctx, pool, account.TokenParams{Email: u.Email, Name: "ci",
			Scopes: []string{"decide, runs:read", "decide"}, By: "admin"})
		require.NoError(t, err)
		require.Equal(t, []string{"runs:read", "decide"}, tok.Scopes, "in the order of Scopes, once each")
		list, err := account.ListTokens(ctx, pool, u.Email)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, tok.PublicID, list[0].PublicID)

		_, err = account.RevokeToken(ctx, pool, tok.PublicID, "admin")
		require.NoError(t, err)
		_, _, err = account.TokenUser(ctx, pool, secret, time.Now())
		require.ErrorIs(t, err, account.ErrTokenRefused)
		_, err = account.RevokeToken(ctx, pool, tok.PublicID, "admin")
		require.ErrorIs(t, err, account.ErrAlreadyRevoked)
		_, err = account.RevokeToken(ctx, pool, "cs_zzzzzzzz", "admin")
		require.ErrorIs(t, err, account.ErrInvalid)
		_, err = account.ListTokens(ctx, pool, "nobody@example.com")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("DisabledUsersTokensAreRefused", func(t *testing.T) {
		t.Parallel()
		u := factory.User(ctx, t, pool, nil)
		_, secret, err := account.CreateToken(ctx, pool, account.TokenParams{Email: u.Email, Name: "ci",
			Scopes: []string{"runs:read"}, By: "admin"})
		require.NoError(t, err)
		require.NoError(t, account.SetDisabled(ctx, pool, u.Email, true, "admin"))
		_, _, err = account.TokenUser(ctx, pool, secret, time.Now())
		require.ErrorIs(t, err, account.ErrTokenRefused)
		require.ErrorContains(t, err, "disabled")
	})
}

// idOf is a user's id as audit events name it.
func idOf(id int64) string { return strconv.FormatInt(id, 10) }
