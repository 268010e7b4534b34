package notice_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/jobs"
	"github.com/countersign/countersign/vocab"
)

// capture is a channel named "email" (the built-in preference) that keeps
// what it is asked to send, and can refuse.
type capture struct {
	mu    sync.Mutex
	sent  []sent
	fails int
}

type sent struct {
	msg notice.Message
	at  time.Time
}

func (c *capture) Name() string { return "email" }

func (c *capture) Send(_ context.Context, m notice.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fails > 0 {
		c.fails--
		return errors.New("451 try again later")
	}
	c.sent = append(c.sent, sent{m, time.Now()})
	return nil
}

func (c *capture) all() []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sent(nil), c.sent...)
}

// items counts the events delivered to each user.
func (c *capture) items() map[int64]int {
	out := map[int64]int{}
	for _, s := range c.all() {
		out[s.msg.To.UserID] += len(s.msg.Items)
	}
	return out
}

func outbox(t *testing.T, pool *pgxpool.Pool) *notice.Outbox {
	t.Helper()
	s, err := jobs.NewScheduler(pool, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	return notice.NewOutbox(s)
}

func user(t *testing.T, pool *pgxpool.Pool, role vocab.Role) *store.User {
	t.Helper()
	u, err := store.UserInsert(context.Background(), pool, fmt.Sprintf("%s-%d@example.com", role, time.Now().UnixNano()), "n", string(role), "x")
	require.NoError(t, err)
	return u
}

func emit(t *testing.T, pool *pgxpool.Pool, o *notice.Outbox, e notice.Event) {
	t.Helper()
	require.NoError(t, store.WithTx(context.Background(), pool, func(ctx context.Context, tx pgx.Tx) error {
		return o.Emit(ctx, tx, e)
	}))
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func waitFor(t *testing.T, within time.Duration, ok func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("not within %s: %s", within, what)
}

// TestOutboxRollback: an event emitted in a transaction that rolls back
// leaves no event, no job and no message.
func TestOutboxRollback(t *testing.T) {
	t.Parallel()
	ch := &capture{}
	b := testapp.Start(t, testapp.Options{Channels: []notice.Channel{ch}})
	u := user(t, b.Pool, vocab.RoleReviewer)
	o := outbox(t, b.Pool)
	err := store.WithTx(context.Background(), b.Pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := o.Emit(ctx, tx, notice.Event{Kind: notice.DecisionRecorded, UserIDs: []int64{u.ID}}); err != nil {
			return err
		}
		return errors.New("the decision failed after its notification was written")
	})
	require.Error(t, err)
	time.Sleep(time.Second)
	require.Zero(t, count(t, b.Pool, `SELECT count(*) FROM notice_events`))
	require.Zero(t, count(t, b.Pool, `SELECT count(*) FROM river_job WHERE kind LIKE 'notice_%'`))
	require.Empty(t, ch.all())
}

// TestCrashBeforeDelivery: the process that wrote the outbox is gone before
// any job ran; a new process delivers the message once, and a fan-out run
// again adds nothing.
func TestCrashBeforeDelivery(t *testing.T) {
	t.Parallel()
	pool, url := testdb.Pool(t)
	u := user(t, pool, vocab.RoleApprover)
	// The first process committed the event and its fan-out job, then died.
	emit(t, pool, outbox(t, pool), notice.Event{Kind: notice.RequestWaiting, Roles: []vocab.Role{vocab.RoleApprover}})
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM river_job WHERE kind = 'notice_fanout' AND state = 'available'`))

	ch := &capture{}
	b := testapp.StartOn(t, pool, url, testapp.Options{Channels: []notice.Channel{ch}})
	waitFor(t, 10*time.Second, func() bool { return len(ch.all()) == 1 }, "one message after recovery")
	var id int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT id FROM notice_events`).Scan(&id))
	require.NoError(t, b.App.Notices.Fanout(context.Background(), id), "a fan-out run twice")
	time.Sleep(1500 * time.Millisecond)
	require.Len(t, ch.all(), 1, "sent once")
	require.Equal(t, u.ID, ch.all()[0].msg.To.UserID)
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM notice_deliveries`))
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM notice_attempts WHERE ok`))
}

// TestRetryRecordsAttempts: a refused message is tried again with backoff,
// each attempt recorded; one that keeps failing ends failed, and the admin's
// redelivery sends it.
func TestRetryRecordsAttempts(t *testing.T) {
	t.Parallel()
	ch := &capture{fails: 2}
	b := testapp.Start(t, testapp.Options{Channels: []notice.Channel{ch}})
	user(t, b.Pool, vocab.RoleAdmin)
	emit(t, b.Pool, outbox(t, b.Pool), notice.Event{Kind: notice.RunFailed, Roles: []vocab.Role{vocab.RoleAdmin}, Detail: "boom"})
	// The attempt is recorded just after the channel accepted the message.
	waitFor(t, 30*time.Second, func() bool {
		return count(t, b.Pool, `SELECT count(*) FROM notice_attempts WHERE ok`) == 1
	}, "sent on the third attempt")
	require.Len(t, ch.all(), 1)
	require.Equal(t, []int{0, 0, 1}, attempts(t, b.Pool))
	msgs, err := store.NoticeMessageList(context.Background(), b.Pool, false, 0, 10)
	require.NoError(t, err)
	require.Equal(t, "sent", msgs[0].Status)
	require.Equal(t, 3, msgs[0].Attempts)

	// Failed for good, then redelivered.
	_, err = store.NoticeMessageRecord(context.Background(), b.Pool, msgs[0].ID, "failed", "gave up")
	require.NoError(t, err)
	require.NoError(t, b.App.Notices.Redeliver(context.Background(), msgs[0].ID))
	waitFor(t, 10*time.Second, func() bool {
		return count(t, b.Pool, `SELECT count(*) FROM notice_attempts WHERE ok`) == 2
	}, "redelivered")
	require.Len(t, ch.all(), 2)
	require.ErrorIs(t, b.App.Notices.Redeliver(context.Background(), msgs[0].ID), store.ErrNotFound, "only a failed message is redelivered")
}

func attempts(t *testing.T, pool *pgxpool.Pool) []int {
	rows, err := pool.Query(context.Background(), `SELECT ok::int FROM notice_attempts ORDER BY id`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[int])
	require.NoError(t, err)
	return out
}

// TestCoalescing: a burst of 1,000 events becomes, for each reviewer, one
// message at once and then at most one digest per window, carrying every
// event exactly once.
func TestCoalescing(t *testing.T) {
	t.Parallel()
	const window = 2 * time.Second
	ch := &capture{}
	b := testapp.Start(t, testapp.Options{Channels: []notice.Channel{ch}, NoticeWindow: window})
	var reviewers []*store.User
	for range 3 {
		reviewers = append(reviewers, user(t, b.Pool, vocab.RoleReviewer))
	}
	user(t, b.Pool, vocab.RoleViewer) // not a reviewer: hears nothing
	o := outbox(t, b.Pool)
	const n = 1000
	start := time.Now()
	for i := 0; i < n; i += 100 {
		require.NoError(t, store.WithTx(context.Background(), b.Pool, func(ctx context.Context, tx pgx.Tx) error {
			for j := 0; j < 100; j++ {
				if err := o.Emit(ctx, tx, notice.Event{Kind: notice.RequestWaiting, Roles: []vocab.Role{vocab.RoleReviewer}}); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	waitFor(t, 60*time.Second, func() bool {
		got := ch.items()
		for _, r := range reviewers {
			if got[r.ID] < n {
				return false
			}
		}
		return true
	}, "every reviewer hears of every event")
	elapsed := time.Since(start)
	time.Sleep(window + time.Second)
	per := map[int64][]sent{}
	for _, s := range ch.all() {
		per[s.msg.To.UserID] = append(per[s.msg.To.UserID], s)
	}
	require.Len(t, per, len(reviewers), "the viewer hears nothing")
	for _, r := range reviewers {
		msgs := per[r.ID]
		require.Equal(t, n, ch.items()[r.ID], "each event once")
		require.LessOrEqual(t, len(msgs), 2+int(elapsed/window), "at most one message per window")
		// The window is kept where messages are made (the flush), in one
		// transaction with the outlet's last send: their times are a window apart.
		rows, err := b.Pool.Query(context.Background(), `SELECT created_at FROM notice_messages WHERE user_id = $1 ORDER BY id`, r.ID)
		require.NoError(t, err)
		made, err := pgx.CollectRows(rows, pgx.RowTo[time.Time])
		require.NoError(t, err)
		require.Len(t, made, len(msgs))
		for i := 1; i < len(made); i++ {
			require.GreaterOrEqual(t, made[i].Sub(made[i-1]), window-50*time.Millisecond, "messages a window apart")
		}
		require.Greater(t, len(msgs[len(msgs)-1].msg.Items), 1, "the burst ends in a digest")
		t.Logf("reviewer %d: %d messages for %d events in %s", r.ID, len(msgs), n, elapsed)
	}
}

// TestQuietHours: quiet hours hold a message until they end, across midnight.
func TestQuietHours(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	p := notice.Prefs{QuietStart: 22 * 60, QuietEnd: 7 * 60, Location: berlin}
	at := func(h, m int) time.Time { return time.Date(2026, 3, 10, h, m, 0, 0, berlin) }
	require.Equal(t, at(12, 0), p.QuietUntil(at(12, 0)), "outside")
	require.Equal(t, at(7, 0).AddDate(0, 0, 1), p.QuietUntil(at(23, 0)), "before midnight")
	require.Equal(t, at(7, 0), p.QuietUntil(at(3, 0)), "after midnight")
	require.Equal(t, at(7, 0), p.QuietUntil(at(7, 0)), "the end is not quiet")
	require.Equal(t, at(3, 0), notice.Prefs{Location: berlin}.QuietUntil(at(3, 0)), "none")
}

// TestQuietHoursHoldDelivery: a non-urgent event in a user's quiet hours
// waits for their end; an urgent one goes at once.
func TestQuietHoursHoldDelivery(t *testing.T) {
	t.Parallel()
	ch := &capture{}
	b := testapp.Start(t, testapp.Options{Channels: []notice.Channel{ch}})
	u := user(t, b.Pool, vocab.RoleApprover)
	now := time.Now().UTC()
	start := now.Hour()*60 + now.Minute()
	require.NoError(t, store.NoticePreferenceSet(context.Background(), b.Pool, u.ID, store.NoticePrefs{Channels: []string{"email"},
		Events: []string{string(notice.RequestWaiting), string(notice.DeadlineNear)}, QuietStart: start, QuietEnd: (start + 120) % 1440, TimeZone: "UTC"}))
	o := outbox(t, b.Pool)
	emit(t, b.Pool, o, notice.Event{Kind: notice.RequestWaiting, UserIDs: []int64{u.ID}})
	emit(t, b.Pool, o, notice.Event{Kind: notice.DeadlineNear, UserIDs: []int64{u.ID}})
	waitFor(t, 10*time.Second, func() bool { return len(ch.all()) == 1 }, "the urgent one")
	time.Sleep(time.Second)
	got := ch.all()
	require.Len(t, got, 1)
	require.Len(t, got[0].msg.Items, 1)
	require.Equal(t, notice.DeadlineNear, got[0].msg.Items[0].Kind)
	require.Equal(t, 1, count(t, b.Pool, `SELECT count(*) FROM notice_deliveries WHERE message_id IS NULL AND not_before > now() + interval '1 hour'`),
		"the other waits for the end of quiet hours")
}

// TestCrashAfterFlush: a process fanned the event out and made its message,
// then died before sending it; the jobs it left run on a new process, the
// fan-out and flush again (adding nothing), and the message goes out once.
func TestCrashAfterFlush(t *testing.T) {
	t.Parallel()
	pool, url := testdb.Pool(t)
	u := user(t, pool, vocab.RoleApprover)
	ctx := context.Background()
	dead := testapp.StartOn(t, pool, url, testapp.Options{NoWorker: true, Channels: []notice.Channel{&capture{}}})
	emit(t, pool, outbox(t, pool), notice.Event{Kind: notice.RequestWaiting, Roles: []vocab.Role{vocab.RoleApprover}})
	var id int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT id FROM notice_events`).Scan(&id))
	require.NoError(t, dead.App.Notices.Fanout(ctx, id))
	wait, err := dead.App.Notices.Flush(ctx, u.ID, "email")
	require.NoError(t, err)
	require.Zero(t, wait)
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM notice_messages WHERE status = 'pending'`))

	ch := &capture{}
	testapp.StartOn(t, pool, url, testapp.Options{Channels: []notice.Channel{ch}})
	waitFor(t, 10*time.Second, func() bool { return len(ch.all()) == 1 }, "the message after recovery")
	// The flush left behind found the window just used and waits for its
	// end, when it will find nothing to send.
	const settled = `SELECT count(*) FROM river_job WHERE (kind IN ('notice_fanout', 'notice_send') AND state = 'completed')
		OR (kind = 'notice_flush' AND state = 'scheduled' AND scheduled_at > now() + interval '30 seconds')`
	for deadline := time.Now().Add(10 * time.Second); count(t, pool, settled) < 3; time.Sleep(20 * time.Millisecond) {
		require.True(t, time.Now().Before(deadline), "every job left behind runs: %s", jobStates(t, pool))
	}
	time.Sleep(500 * time.Millisecond)
	require.Len(t, ch.all(), 1, "sent once")
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM notice_messages`))
	require.Equal(t, 1, count(t, pool, `SELECT count(*) FROM notice_deliveries`))
}

func jobStates(t *testing.T, pool *pgxpool.Pool) string {
	rows, err := pool.Query(context.Background(), `SELECT kind || ' ' || state || ' ' || scheduled_at::text FROM river_job ORDER BY id`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return fmt.Sprint(out)
}
