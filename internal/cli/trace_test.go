package cli

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServeRefusesABadTraceEndpoint: an OTLP endpoint that is not an http(s)
// URL stops serve (and the run commands) at start with one line, before
// anything is opened.
func TestServeRefusesABadTraceEndpoint(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"serve", "--addr", "127.0.0.1:0"}, {"run", "start", "--workflow", "support_triage", "--key", "k"}} {
		t.Run(args[0], func(t *testing.T) {
			r := run(t, map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/none?sslmode=disable",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, args...)
			require.Equal(t, exitUsage, r.code, r.stderr)
			require.Contains(t, r.stderr, `OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" is not an http(s) URL`)
			require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %s", r.stderr)
		})
	}
}
