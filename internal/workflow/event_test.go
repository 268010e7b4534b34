package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

type waiterIn struct {
	TimeoutMS int `json:"timeout_ms"`
	SleepMS   int `json:"sleep_ms"`
}

type scraped struct {
	Pages int `json:"pages"`
}

// waiter waits for the event "scraped" (after a sleep of in.SleepMS, so that
// an event can arrive before the wait), and answers its pages, or -1 on a
// timeout.
func waiter(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "waiter", func(ctx context.Context, in waiterIn) (int, error) {
		if in.SleepMS > 0 {
			if err := workflow.Sleep(ctx, "pause", time.Duration(in.SleepMS)*time.Millisecond); err != nil {
				return 0, err
			}
		}
		ev, err := workflow.WaitEvent[scraped](ctx, "scraped", time.Duration(in.TimeoutMS)*time.Millisecond)
		if errors.Is(err, workflow.ErrEventTimeout) {
			return -1, nil
		}
		if err != nil {
			return 0, err
		}
		return ev.Pages, nil
	})
	workflow.Register(r, "strict_waiter", func(ctx context.Context, _ struct{}) (int, error) {
		ev, err := workflow.WaitEvent[scraped](ctx, "scraped", 200*time.Millisecond)
		return ev.Pages, err
	})
}

func deliver(t *testing.T, b *testapp.Bundle, runID, key, payload string) (*store.Event, bool) {
	t.Helper()
	ev, created, err := b.Engine.Signal(context.Background(), workflow.SignalParams{RunID: runID, Name: "scraped",
		Key: key, Payload: json.RawMessage(payload), Actor: "scraper"})
	require.NoError(t, err)
	return ev, created
}

func TestWaitEvent(t *testing.T) {
	t.Parallel()
	b := testapp.Start(t, testapp.Options{Register: waiter})
	ctx := context.Background()

	t.Run("ArrivesLate", func(t *testing.T) {
		run := start(t, b, "waiter", "late", waiterIn{TimeoutMS: 3600_000})
		parked := b.WaitRun(t, run.ID, vocab.RunWaitingEvent)
		require.Equal(t, "scraped", parked.CurrentStep)
		step := waitingStep(t, b, run.ID)
		require.Equal(t, vocab.StepKindEvent, step.Kind)
		require.NotNil(t, step.WakeAt, "the timeout shows")
		require.Zero(t, runningJobs(t, b, run.ID), "waiting, the run holds no running job")

		ev, created := deliver(t, b, run.ID, "k1", `{"pages": 7}`)
		require.True(t, created)
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunCompleted, done.Status, "error: %v", done.ErrorMessage)
		require.JSONEq(t, `7`, string(done.Output))
		require.Equal(t, 1, auditCount(t, b, run.ID, "run.event_waiting", ""))
		require.Equal(t, 1, auditCount(t, b, run.ID, "run.event_received", ""))
		require.Equal(t, 1, auditCount(t, b, run.ID, "run.woke", "event"))
		events, err := store.EventList(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Len(t, events, 1)
		require.Equal(t, ev.ID, events[0].ID)
		require.NotNil(t, events[0].ConsumedSeq)

		t.Run("TwiceIsANoOp", func(t *testing.T) {
			again, created := deliver(t, b, run.ID, "k1", `{"pages": 9}`)
			require.False(t, created)
			require.Equal(t, ev.ID, again.ID, "the same answer")
			require.JSONEq(t, `{"pages": 7}`, string(again.Payload))
			events, err := store.EventList(ctx, b.Pool, run.ID)
			require.NoError(t, err)
			require.Len(t, events, 1)
			require.Equal(t, 1, auditCount(t, b, run.ID, "run.event_received", ""))
		})
		t.Run("FinalRunRefusesNewEvents", func(t *testing.T) {
			_, _, err := b.Engine.Signal(ctx, workflow.SignalParams{RunID: run.ID, Name: "scraped", Key: "k2", Payload: json.RawMessage(`{}`)})
			require.ErrorIs(t, err, workflow.ErrFinal)
		})
	})

	t.Run("ArrivesEarly", func(t *testing.T) {
		run := start(t, b, "waiter", "early", waiterIn{TimeoutMS: 3600_000, SleepMS: 500})
		b.WaitRun(t, run.ID, vocab.RunSleeping)
		_, created := deliver(t, b, run.ID, "e1", `{"pages": 3}`)
		require.True(t, created)
		got, err := store.RunGet(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunSleeping, got.Status, "an event for a later wait does not wake a sleep")
		_, created = deliver(t, b, run.ID, "e1", `{"pages": 3}`)
		require.False(t, created)
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.JSONEq(t, `3`, string(done.Output), "the kept event was consumed at the wait")
		require.Zero(t, auditCount(t, b, run.ID, "run.event_waiting", ""), "it never waited")
	})

	t.Run("RacesTheWait", func(t *testing.T) {
		// Delivered while the run starts and reaches its wait: the run's
		// lock orders each delivery with the wait, so none is lost.
		const n = 12
		runs := make([]*store.Run, n)
		var wg sync.WaitGroup
		for i := range n {
			runs[i] = start(t, b, "waiter", fmt.Sprintf("race-%d", i), waiterIn{TimeoutMS: 3600_000})
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 5 * time.Millisecond)
				_, _, err := b.Engine.Signal(ctx, workflow.SignalParams{RunID: runs[i].ID, Name: "scraped", Key: "race",
					Payload: json.RawMessage(fmt.Sprintf(`{"pages": %d}`, i))})
				assert.NoError(t, err)
			}()
		}
		wg.Wait()
		for i, run := range runs {
			done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
			require.JSONEq(t, fmt.Sprint(i), string(done.Output))
		}
	})

	t.Run("TimesOut", func(t *testing.T) {
		run := start(t, b, "waiter", "timeout", waiterIn{TimeoutMS: 300})
		b.WaitRun(t, run.ID, vocab.RunWaitingEvent)
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.JSONEq(t, `-1`, string(done.Output), "the author saw ErrEventTimeout")
		require.Equal(t, 1, auditCount(t, b, run.ID, "run.woke", "timeout"))
		t.Run("EventAfterTheTimeoutIsRefused", func(t *testing.T) {
			_, _, err := b.Engine.Signal(ctx, workflow.SignalParams{RunID: run.ID, Name: "scraped", Payload: json.RawMessage(`{}`)})
			require.ErrorIs(t, err, workflow.ErrFinal)
		})
	})

	t.Run("UnhandledTimeoutFailsTheRun", func(t *testing.T) {
		run := start(t, b, "strict_waiter", "strict", struct{}{})
		done := b.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
		require.Equal(t, vocab.RunFailed, done.Status)
		require.Equal(t, workflow.CodeEventTimeout, *done.ErrorCode)
	})

	t.Run("BadDeliveries", func(t *testing.T) {
		run := start(t, b, "waiter", "bad", waiterIn{TimeoutMS: 3600_000})
		b.WaitRun(t, run.ID, vocab.RunWaitingEvent)
		for name, p := range map[string]workflow.SignalParams{
			"NoName":      {RunID: run.ID, Payload: json.RawMessage(`{}`)},
			"SlashInName": {RunID: run.ID, Name: "a/b", Payload: json.RawMessage(`{}`)},
			"NotJSON":     {RunID: run.ID, Name: "scraped", Payload: json.RawMessage(`{`)},
			"TooLarge":    {RunID: run.ID, Name: "scraped", Payload: json.RawMessage(`"` + strings.Repeat("x", workflow.MaxEventPayload) + `"`)},
			"LongKey":     {RunID: run.ID, Name: "scraped", Key: strings.Repeat("k", 201), Payload: json.RawMessage(`{}`)},
		} {
			t.Run(name, func(t *testing.T) {
				_, _, err := b.Engine.Signal(ctx, p)
				require.ErrorIs(t, err, workflow.ErrInvalidInput)
			})
		}
		_, _, err := b.Engine.Signal(ctx, workflow.SignalParams{RunID: "00000000-0000-0000-0000-000000000000", Name: "scraped"})
		require.ErrorIs(t, err, workflow.ErrNotFound)
		events, err := store.EventList(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Empty(t, events, "nothing was written")
		got, err := store.RunGet(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Equal(t, vocab.RunWaitingEvent, got.Status)
		require.NoError(t, b.Engine.Cancel(ctx, run.ID, "tester@example.com"), "a waiting run can be cancelled")
	})
}
