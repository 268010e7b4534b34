package app

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
)

func TestDemoWorkflowsOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	pool, url := testdb.Pool(t)
	cfg := config.Config{DatabaseURL: url, Workers: 1, RescueAfter: time.Minute, ModelProvider: "offline"}
	for _, tc := range []struct {
		name string
		demo bool
	}{{"Production", false}, {"Demo", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(cfg, pool, Options{Demo: tc.demo})
			require.NoError(t, err)
			require.Equal(t, tc.demo, slices.Contains(a.Engine.Registry().Names(), "support_triage"))
		})
	}
}

func TestRiverLogsWarningsToTheAppLog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	app := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	river := slog.New(minLevel{app.Handler().WithAttrs([]slog.Attr{slog.String("component", "river")}), slog.LevelWarn})
	river.Info("routine")
	river.With("job", 1).WithGroup("g").Debug("chatter")
	require.Empty(t, buf.String())
	require.False(t, river.Enabled(context.Background(), slog.LevelInfo))
	river.Warn("job failed", "attempt", 2)
	river.Error("leader lost")
	require.Contains(t, buf.String(), `level=WARN msg="job failed" component=river attempt=2`)
	require.Contains(t, buf.String(), `level=ERROR msg="leader lost" component=river`)
}

func TestNewRegistry(t *testing.T) {
	t.Parallel()
	binary := workflow.NewRegistry()
	workflow.Register(binary, "greet", func(context.Context, struct{}) (string, error) { return "hello", nil })

	t.Run("IncludesTheBinarysWorkflows", func(t *testing.T) {
		reg := NewRegistry(Options{Workflows: binary, Demo: true}, ai.NewOffline())
		require.Contains(t, reg.Names(), "greet")
		require.Contains(t, reg.Names(), "support_triage")
		require.Equal(t, []string{"greet"}, binary.Names(), "the binary's registry is left as it was")
		// A second process from the same registry (the CLI builds one per command).
		require.Contains(t, NewRegistry(Options{Workflows: binary}, ai.NewOffline()).Names(), "greet")
	})

	t.Run("NameTwicePanics", func(t *testing.T) {
		twice := func(r *workflow.Registry, _ *ai.Offline) {
			workflow.Register(r, "greet", func(context.Context, struct{}) (string, error) { return "", nil })
		}
		require.PanicsWithValue(t, `workflow "greet" version 1 registered twice`, func() {
			NewRegistry(Options{Workflows: binary, Register: twice}, ai.NewOffline())
		})
	})
}
