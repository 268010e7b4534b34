package account_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

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
