package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestFromEnv(t *testing.T) {
	env := map[string]string{"COUNTERSIGN_WORKERS": "7", "COUNTERSIGN_RESCUE_AFTER": "30m", "OPENAI_API_KEY": "sk-x",
		"COUNTERSIGN_MODEL_PROVIDER": "openai", "COUNTERSIGN_MODEL": "llama3.1", "OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}
	c, err := FromEnv(func(k string) string { return env[k] })
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, DefaultDatabaseURL, c.DatabaseURL)
	require.Equal(t, ":8080", c.Addr)
	require.Equal(t, 7, c.Workers)
	require.Equal(t, 30*time.Minute, c.RescueAfter)
	require.Equal(t, "sk-x", c.ModelAPIKey)
	require.Equal(t, "http://127.0.0.1:11434/v1", c.ModelBaseURL)

	_, err = FromEnv(func(k string) string { return map[string]string{"COUNTERSIGN_RESCUE_AFTER": "soon"}[k] })
	require.ErrorContains(t, err, "COUNTERSIGN_RESCUE_AFTER must be a positive duration")
	c.ModelBaseURL = "ftp://x"
	require.ErrorContains(t, c.Validate(), "COUNTERSIGN_MODEL_BASE_URL must be an http(s) URL")
}

func TestMaxStepOutput(t *testing.T) {
	for v, want := range map[string]int{"": DefaultMaxStepOutput, "4096": 4096, "64KiB": 64 << 10, "2 MiB": 2 << 20} {
		c, err := FromEnv(func(k string) string { return map[string]string{"COUNTERSIGN_MAX_STEP_OUTPUT": v}[k] })
		require.NoError(t, err, v)
		require.NoError(t, c.Validate(), v)
		require.Equal(t, want, c.MaxStepOutput, v)
	}
	for _, v := range []string{"lots", "-5", "1.5MiB", "256KB", "0", "99999999999MiB"} {
		_, err := FromEnv(func(k string) string { return map[string]string{"COUNTERSIGN_MAX_STEP_OUTPUT": v}[k] })
		require.ErrorContains(t, err, "COUNTERSIGN_MAX_STEP_OUTPUT must be a size in bytes", v)
	}
	for _, v := range []string{"100", "65MiB"} {
		c, err := FromEnv(func(k string) string { return map[string]string{"COUNTERSIGN_MAX_STEP_OUTPUT": v}[k] })
		require.NoError(t, err, v)
		require.ErrorContains(t, c.Validate(), "COUNTERSIGN_MAX_STEP_OUTPUT must be between 1KiB and 64MiB", v)
	}
}
