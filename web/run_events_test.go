package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

func eventWaiter(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "nap_then_wait", func(ctx context.Context, _ struct{}) (int, error) {
		if err := workflow.Sleep(ctx, "nap", time.Hour); err != nil {
			return 0, err
		}
		return 0, nil
	})
	workflow.Register(r, "await_scrape", func(ctx context.Context, _ struct{}) (map[string]int, error) {
		return workflow.WaitEvent[map[string]int](ctx, "scraped", time.Hour)
	})
}

type eventAnswer struct {
	ID             int64  `json:"id"`
	RunID          string `json:"run_id"`
	Name           string `json:"name"`
	IdempotencyKey string `json:"idempotency_key"`
}

// TestAPIRunEvent delivers an event to a waiting run over the API: it
// resumes the run; a repeat answers the same and changes nothing; bad
// deliveries are refused with nothing stored; an ended run refuses new ones.
func TestAPIRunEvent(t *testing.T) {
	t.Parallel()
	c := startConsole(t, eventWaiter)
	agent := c.api(t, "reviewer@example.com")
	ctx := context.Background()
	run, _, err := c.Engine.Start(ctx, workflow.StartParams{Workflow: "await_scrape", BusinessKey: "s-1", StartedBy: "agent@example.com"})
	require.NoError(t, err)
	c.WaitRun(t, run.ID, vocab.RunWaitingEvent)
	path := "/runs/" + run.ID + "/events/scraped"

	t.Run("Refused", func(t *testing.T) {
		var e apiErr
		require.Equal(t, 400, agent.do("POST", path, `{"data": 1, "extra": 2}`, &e))
		require.Equal(t, 422, agent.do("POST", path, map[string]any{"data": strings.Repeat("x", workflow.MaxEventPayload)}, &e))
		require.Equal(t, "invalid", e.Error.Code)
		require.Equal(t, 404, agent.do("POST", "/runs/00000000-0000-0000-0000-000000000000/events/scraped", map[string]any{"data": 1}, &e))
		require.Equal(t, 403, c.api(t, "viewer@example.com").do("POST", path, map[string]any{"data": 1}, &e))
		events, err := store.EventList(ctx, c.Pool, run.ID)
		require.NoError(t, err)
		require.Empty(t, events)
	})

	var first, again eventAnswer
	require.Equal(t, 202, agent.do("POST", path, map[string]any{"data": map[string]int{"pages": 5}, "idempotency_key": "cb-1"}, &first))
	require.Equal(t, "cb-1", first.IdempotencyKey)
	done := c.WaitRun(t, run.ID, vocab.RunCompleted, vocab.RunFailed)
	require.JSONEq(t, `{"pages": 5}`, string(done.Output))

	t.Run("RepeatAnswersTheSame", func(t *testing.T) {
		require.Equal(t, 202, agent.do("POST", path, map[string]any{"data": map[string]int{"pages": 6}, "idempotency_key": "cb-1"}, &again))
		require.Equal(t, first, again)
	})
	t.Run("EndedRunRefusesNewEvents", func(t *testing.T) {
		var e apiErr
		require.Equal(t, 409, agent.do("POST", path, map[string]any{"data": 1, "idempotency_key": "cb-2"}, &e))
		require.Equal(t, "run_ended", e.Error.Code)
	})
}

// TestRunPageShowsWaits: the run page's timeline shows a sleep's wake-up
// time, and an event wait's name and timeout.
func TestRunPageShowsWaits(t *testing.T) {
	t.Parallel()
	c := startConsole(t, eventWaiter)
	ctx := context.Background()
	hc := c.client(t, "reviewer@example.com")
	sleeping, _, err := c.Engine.Start(ctx, workflow.StartParams{Workflow: "nap_then_wait", BusinessKey: "n-1"})
	require.NoError(t, err)
	waiting, _, err := c.Engine.Start(ctx, workflow.StartParams{Workflow: "await_scrape", BusinessKey: "w-1"})
	require.NoError(t, err)
	c.WaitRun(t, sleeping.ID, vocab.RunSleeping)
	c.WaitRun(t, waiting.ID, vocab.RunWaitingEvent)

	doc, code := c.get(t, hc, "/runs/"+sleeping.ID)
	require.Equal(t, 200, code)
	require.Equal(t, "sleeping", strings.TrimSpace(doc.Find(`[data-testid="run"] header [data-testid="status"]`).First().Text()))
	wake := doc.Find(`[data-testid="step-wake"]`)
	require.Equal(t, 1, wake.Length())
	require.Contains(t, wake.Text(), "wakes")
	require.Contains(t, wake.Text(), "in 59m")

	doc, code = c.get(t, hc, "/runs/"+waiting.ID)
	require.Equal(t, 200, code)
	require.Contains(t, doc.Find(`[data-testid="step-awaits"]`).Text(), "awaits event scraped")
	require.Contains(t, doc.Find(`[data-testid="step-wake"]`).Text(), "times out")
}
