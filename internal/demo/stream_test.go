package demo_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/testapp"
)

// syncBuffer is a log sink the test reads while Stream writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func TestStreamPausesWhileRequestsWait(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{})
	var waiting atomic.Int64
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		demo.Stream(ctx, b.Engine, func(context.Context) (int, error) { return int(waiting.Load()), nil },
			10*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	}()
	started := func() int { return logs.count("demo run started") }

	require.Eventually(t, func() bool { return started() >= 2 }, 10*time.Second, 10*time.Millisecond, "runs start while few wait")

	waiting.Store(demo.MaxWaiting + 1)
	require.Eventually(t, func() bool { return logs.count("demo paused") == 1 }, 10*time.Second, 10*time.Millisecond)
	n := started()
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, n, started(), "no run starts while paused")
	require.Equal(t, 1, logs.count("demo paused"), "logged once")

	waiting.Store(demo.MaxWaiting)
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, n, started(), "still paused until fewer wait")

	waiting.Store(demo.MaxWaiting - 1)
	require.Eventually(t, func() bool { return started() > n+1 }, 10*time.Second, 10*time.Millisecond, "resumed")
	require.Equal(t, 1, logs.count("demo resumed"), "logged once")
	require.Equal(t, 1, logs.count("demo paused"))
}
