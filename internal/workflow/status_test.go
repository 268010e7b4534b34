package workflow

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/vocab"
)

// TestFinalAgreesWithTransitions checks that RunStatus.Final, which every
// layer reads, says what the transitions table says: a status is final
// exactly when no status may follow it.
func TestFinalAgreesWithTransitions(t *testing.T) {
	t.Parallel()
	for _, s := range vocab.RunStatuses() {
		_, hasNext := transitions[s]
		require.Equal(t, !hasNext, s.Final(), s)
	}
	for from, tos := range transitions {
		require.True(t, from.Valid(), from)
		for _, to := range tos {
			require.True(t, to.Valid(), to)
		}
	}
}
