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
