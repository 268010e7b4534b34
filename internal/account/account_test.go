package account_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/testdb"
)

const password = "correct-horse-battery"

func TestSignInThrottle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	_, err := account.Create(ctx, pool, "ann@example.com", "Ann", "admin", password, "setup")
	require.NoError(t, err)
	count := func(kind string) int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE kind = $1`, kind).Scan(&n))
		return n
	}
	const attacker = "203.0.113.66"

	t.Run("ParallelWrongPasswordsAreCheckedAtMostTheLimit", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[error]int{}
		for range 100 {
			wg.Go(func() {
				_, err := account.SignIn(ctx, pool, "ann@example.com", "wrong-password", attacker)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case errors.Is(err, account.ErrBadCredentials):
					got[account.ErrBadCredentials]++
				case errors.Is(err, account.ErrThrottled):
					got[account.ErrThrottled]++
				default:
					got[err]++
				}
			})
		}
		wg.Wait()
		require.Equal(t, map[error]int{account.ErrBadCredentials: account.MaxPerAccountIP, account.ErrThrottled: 100 - account.MaxPerAccountIP}, got)
		// Each checked password leaves one auth.login_failed event.
		require.Equal(t, account.MaxPerAccountIP, count("auth.login_failed"), "password checks")
	})

	t.Run("TheRightPasswordFromElsewhereSignsIn", func(t *testing.T) {
		u, err := account.SignIn(ctx, pool, "ann@example.com", password, "198.51.100.7")
		require.NoError(t, err)
		require.Equal(t, "ann@example.com", u.Email)
		_, err = account.SignIn(ctx, pool, "ann@example.com", password, attacker)
		require.ErrorIs(t, err, account.ErrThrottled, "the attacker's address stays throttled")
	})

	t.Run("ThrottledAttemptsAreAuditedOncePerAddressAndWindow", func(t *testing.T) {
		before := count("auth.login_throttled")
		require.Equal(t, 1, before, "the first refusal in the window")
		var wg sync.WaitGroup
		for range 300 {
			wg.Go(func() {
				_, err := account.SignIn(ctx, pool, "ann@example.com", "wrong-password", attacker)
				require.ErrorIs(t, err, account.ErrThrottled)
			})
		}
		wg.Wait()
		// One event per address and window: a window boundary during the
		// burst may open one more.
		require.LessOrEqual(t, count("auth.login_throttled"), before+1, "300 more refusals add no event within the window")
		require.Equal(t, account.MaxPerAccountIP, count("auth.login_failed"))

		// The window ends: the next attempt (from anyone) writes its total.
		_, err := pool.Exec(ctx, `UPDATE login_throttle SET window_start = window_start - interval '1 hour'`)
		require.NoError(t, err)
		_, err = account.SignIn(ctx, pool, "ann@example.com", password, "198.51.100.7")
		require.NoError(t, err)
		var onsets, totals, total int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT (details->>'complete')::bool),
				count(*) FILTER (WHERE (details->>'complete')::bool),
				coalesce(sum((details->>'count')::int) FILTER (WHERE (details->>'complete')::bool), 0)
			FROM audit_events WHERE kind = 'auth.login_throttled'`).Scan(&onsets, &totals, &total))
		require.Equal(t, onsets, totals, "each window's first refusal and its total: two events per address and window")
		require.Equal(t, 100-account.MaxPerAccountIP+1+300, total, "every refusal of the window is counted")
		var left int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM login_throttle WHERE window_start < now() - interval '30 minutes'`).Scan(&left))
		require.Zero(t, left, "ended windows are deleted")
	})

	t.Run("TooLongInputWritesNothing", func(t *testing.T) {
		var events, counters int
		require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM login_throttle)`).Scan(&events, &counters))
		_, err := account.SignIn(ctx, pool, strings.Repeat("x", 3000)+"@example.com", "wrong-password", "192.0.2.1")
		require.ErrorIs(t, err, account.ErrInvalid)
		_, err = account.SignIn(ctx, pool, "ann@example.com", strings.Repeat("x", 2000), "192.0.2.1")
		require.ErrorIs(t, err, account.ErrInvalid)
		var e, c int
		require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM login_throttle)`).Scan(&e, &c))
		require.Equal(t, events, e)
		require.Equal(t, counters, c)
	})

	t.Run("AWindowBoundaryDoesNotResetTheLimit", func(t *testing.T) {
		const ip = "203.0.113.77"
		for range account.MaxPerAccountIP {
			_, err := account.SignIn(ctx, pool, "ann@example.com", "wrong-password", ip)
			require.ErrorIs(t, err, account.ErrBadCredentials)
		}
		older := func() {
			// Oldest rows first: the primary key is checked row by row.
			for _, q := range []string{"<", ">="} {
				_, err := pool.Exec(ctx, `UPDATE login_throttle SET window_start = window_start - $1::interval
					WHERE (key LIKE '%|'||$2 OR key = 'ip:'||$2) AND window_start `+q+` date_bin($1::interval, now(), 'epoch'::timestamptz)`, account.Window, ip)
				require.NoError(t, err)
			}
		}
		older() // the attempts now belong to the previous window
		_, err := account.SignIn(ctx, pool, "ann@example.com", password, ip)
		require.ErrorIs(t, err, account.ErrThrottled)
		older() // and now to the one before: forgotten
		_, err = account.SignIn(ctx, pool, "ann@example.com", password, ip)
		require.NoError(t, err)
	})
}

// TestSignInLimitsAnIPv6Slash64: one IPv6 client is given a whole /64, so
// its addresses share one per-address limit; another /64 has its own.
func TestSignInLimitsAnIPv6Slash64(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	_, err := account.Create(ctx, pool, "ann@example.com", "Ann", "admin", password, "setup")
	require.NoError(t, err)
	for i := range account.MaxPerAddress {
		// A fresh address and email each time, as a client rotating through its /64.
		_, err := account.SignIn(ctx, pool, fmt.Sprintf("x%d@example.com", i), "wrong-password", fmt.Sprintf("2001:db8:1:2::%x", i+1))
		require.ErrorIs(t, err, account.ErrBadCredentials, "attempt %d", i+1)
	}
	_, err = account.SignIn(ctx, pool, "ann@example.com", password, "2001:db8:1:2:ffff:ffff:ffff:ffff")
	require.ErrorIs(t, err, account.ErrThrottled, "the same /64")
	var subject string
	require.NoError(t, pool.QueryRow(ctx, `SELECT subject_id FROM audit_events WHERE kind = 'auth.login_throttled'`).Scan(&subject))
	require.Equal(t, "2001:db8:1:2::/64", subject)

	u, err := account.SignIn(ctx, pool, "ann@example.com", password, "2001:db8:1:3::1")
	require.NoError(t, err, "another /64")
	require.Equal(t, "ann@example.com", u.Email)
	_, err = account.SignIn(ctx, pool, "ann@example.com", password, "::ffff:198.51.100.7")
	require.NoError(t, err, "an IPv4-mapped address is its IPv4 address")
}

// TestFailedSignInEventsAreBounded: past MaxFailedEvents in a window,
// failures from any number of addresses are counted and summarised instead
// of written one by one, and a correct sign-in still works.
func TestFailedSignInEventsAreBounded(t *testing.T) {
	// Not parallel: it lowers a package-wide bound.
	t.Cleanup(account.SetMaxFailedEvents(3))
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	_, err := account.Create(ctx, pool, "ann@example.com", "Ann", "admin", password, "setup")
	require.NoError(t, err)
	type event struct {
		Actor, SubjectType string
		Count              int
		Complete, Summary  bool
	}
	failed := func() []event {
		rows, err := pool.Query(ctx, `SELECT actor, subject_type, coalesce((details->>'count')::int, 0),
			coalesce((details->>'complete')::bool, false), coalesce((details->>'summary')::bool, false)
			FROM audit_events WHERE kind = 'auth.login_failed' ORDER BY id`)
		require.NoError(t, err)
		out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[event])
		require.NoError(t, err)
		return out
	}
	for i := range 8 { // eight addresses, each far below its own limit
		_, err := account.SignIn(ctx, pool, fmt.Sprintf("x%d@example.com", i), "wrong-password", fmt.Sprintf("198.51.100.%d", i+1))
		require.ErrorIs(t, err, account.ErrBadCredentials)
	}
	got := failed()
	require.Len(t, got, 4, "three failures, then one summary")
	for i, e := range got[:3] {
		require.Equal(t, fmt.Sprintf("x%d@example.com", i), e.Actor)
	}
	require.Equal(t, event{Actor: "anonymous", SubjectType: "window", Count: 1, Summary: true}, got[3])

	u, err := account.SignIn(ctx, pool, "ann@example.com", password, "198.51.100.200")
	require.NoError(t, err, "the bound locks nobody out")
	require.Equal(t, "ann@example.com", u.Email)

	// The window ends: its total is written once.
	_, err = pool.Exec(ctx, `UPDATE login_throttle SET window_start = window_start - interval '15 minutes' WHERE key = 'failed:all'`)
	require.NoError(t, err)
	for range 2 {
		_, err = account.SignIn(ctx, pool, "ann@example.com", password, "198.51.100.201")
		require.NoError(t, err)
	}
	got = failed()
	require.Len(t, got, 5)
	require.Equal(t, event{Actor: "anonymous", SubjectType: "window", Count: 5, Complete: true, Summary: true}, got[4])
}
