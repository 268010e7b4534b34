package notify_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
)

// TestCoalescer: signals sent from many goroutines at once all arrive, and
// a lone one goes at once, with no flush needed.
func TestCoalescer(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	l := notify.NewListener(pool, slog.Default())
	msgs, stop := l.Subscribe(2000)
	t.Cleanup(stop)
	go l.Run(ctx)
	<-l.Ready()
	c := notify.NewCoalescer(pool, slog.Default())

	receive := func(t *testing.T, n int) map[string]bool {
		t.Helper()
		got := map[string]bool{}
		deadline := time.After(20 * time.Second)
		for len(got) < n {
			select {
			case m := <-msgs:
				if m.Type == notify.KindRun {
					got[m.ID] = true
				}
			case <-deadline:
				t.Fatalf("received %d of %d signals", len(got), n)
			}
		}
		return got
	}

	t.Run("FlushWaitsForTheSend", func(t *testing.T) {
		c := notify.NewCoalescer(pool, slog.Default())
		c.Flush() // nothing queued: returns at once
		for i := range 50 {
			require.NoError(t, c.Send(notify.Message{Type: notify.KindRun, ID: fmt.Sprintf("flush-%d", i), Status: "running"}))
		}
		c.Flush()
		// Sent and committed: the listener gets all 50 even though no
		// Send is pending any more.
		got := receive(t, 50)
		require.Len(t, got, 50)
	})
	t.Run("Burst", func(t *testing.T) {
		const n = 1000
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				require.NoError(t, c.Send(notify.Message{Type: notify.KindRun, ID: fmt.Sprint("burst-", i), Status: "completed"}))
			}()
		}
		wg.Wait()
		got := receive(t, n)
		for i := range n {
			require.True(t, got[fmt.Sprint("burst-", i)])
		}
	})
	t.Run("Lone", func(t *testing.T) {
		start := time.Now()
		require.NoError(t, c.Send(notify.Message{Type: notify.KindRun, ID: "lone", Status: "completed"}))
		require.True(t, receive(t, 1)["lone"])
		require.Less(t, time.Since(start), 5*time.Second)
	})
}

// TestPublish: a message published in-process reaches the subscribers at
// once, before any notification; when the database then delivers the same
// message (the committed transaction's own, or a Coalescer's), it is not
// delivered twice. A message no one published is delivered as before.
func TestPublish(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	l := notify.NewListener(pool, slog.Default())
	msgs, stop := l.Subscribe(100)
	t.Cleanup(stop)
	go l.Run(ctx)
	<-l.Ready()
	<-msgs // Connected

	next := func(t *testing.T) (notify.Message, bool) {
		t.Helper()
		select {
		case m := <-msgs:
			return m, true
		case <-time.After(2 * time.Second):
			return notify.Message{}, false
		}
	}
	decided := notify.Message{Type: notify.KindDecision, ID: "req-1", RunID: "run-1", Status: "approved"}
	t.Run("OnceAtOnce", func(t *testing.T) {
		// Published with no notification sent: only Publish can deliver it.
		l.Publish(decided)
		m, ok := next(t)
		require.True(t, ok)
		require.Equal(t, decided, m)
		require.NoError(t, notify.Send(ctx, pool, decided))
		// The database's copy is dropped; the next message through proves
		// it was not merely late.
		require.NoError(t, notify.Send(ctx, pool, notify.Message{Type: notify.KindRun, ID: "run-2", Status: "running"}))
		m, ok = next(t)
		require.True(t, ok)
		require.Equal(t, "run-2", m.ID)
	})
	t.Run("DatabaseFirst", func(t *testing.T) {
		// The notification came before the committing call published it.
		first := notify.Message{Type: notify.KindDecision, ID: "req-5", RunID: "run-5", Status: "rejected"}
		require.NoError(t, notify.Send(ctx, pool, first))
		m, ok := next(t)
		require.True(t, ok)
		require.Equal(t, first, m)
		l.Publish(first)
		l.Publish(notify.Message{Type: notify.KindRun, ID: "run-6", Status: "running"})
		m, ok = next(t)
		require.True(t, ok)
		require.Equal(t, "run-6", m.ID, "the second copy of req-5 is dropped")
	})
	t.Run("CoalescerPublishesLocally", func(t *testing.T) {
		c := notify.NewCoalescer(pool, slog.Default())
		c.SetLocal(l)
		sent := notify.Message{Type: notify.KindRun, ID: "run-3", Status: "completed"}
		require.NoError(t, c.Send(sent))
		m, ok := next(t)
		require.True(t, ok)
		require.Equal(t, sent, m)
		c.Flush()
		c.Local(notify.Message{Type: notify.KindRun, ID: "run-4", Status: "running"})
		m, ok = next(t)
		require.True(t, ok)
		require.Equal(t, "run-4", m.ID, "the statement's copy of run-3 is dropped, Local sends none")
		_, ok = next(t)
		require.False(t, ok, "nothing more")
	})
}

// TestNotifyManyRefusesATransaction: the Coalescer's statement commits
// asynchronously, which in a caller's transaction would make that
// transaction's commit asynchronous too.
func TestNotifyManyRefusesATransaction(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	require.Error(t, store.NotifyMany(ctx, tx, []string{"{}"}))
	require.NoError(t, store.NotifyMany(ctx, pool, []string{"{}"}))
}
