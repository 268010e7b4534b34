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
