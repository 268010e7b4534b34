package templates

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// TestHistorySaysVerdictsInWords: the summary and the events' details name
// verdicts as people say them; the data-testid keeps the machine word.
func TestHistorySaysVerdictsInWords(t *testing.T) {
	t.Parallel()
	vote, err := json.Marshal(map[string]any{"verdict": "request_changes", "rule": "refund"})
	require.NoError(t, err)
	v := HistoryView{
		Summary: &store.AuditSummary{Decisions: 5, ByVerdict: map[string]int{"approve": 1, "reject": 1, "edit": 1, "request_changes": 2}},
		Events: []*store.AuditEvent{{ID: 1, Seq: 1, Kind: string(audit.KindBatchDecided), Actor: "kim@example.com",
			SubjectType: "batch", SubjectID: "b1", Details: vote}},
	}
	var buf bytes.Buffer
	require.NoError(t, History(Page{Title: "History"}, v).Render(context.Background(), &buf))
	doc, err := goquery.NewDocumentFromReader(&buf)
	require.NoError(t, err)

	var words []string
	doc.Find(`[data-testid=summary-verdict]`).Each(func(_ int, s *goquery.Selection) { words = append(words, s.Text()) })
	require.ElementsMatch(t, []string{"approved", "rejected", "approved with edits", "changes requested"}, words)
	require.Equal(t, "2", doc.Find(`[data-testid=summary-`+string(vocab.VerdictRequestChanges)+`]`).Text())
	summary := doc.Find(`[data-testid=summary]`).Text()
	require.NotContains(t, summary, "request_changes")

	details := doc.Find(`[data-testid=details]`).Text()
	require.Contains(t, details, "verdict: changes requested")
	require.NotContains(t, details, "request_changes")
}

// TestEveryKindHasWords: the filter menu names every kind the code appends.
func TestEveryKindHasWords(t *testing.T) {
	t.Parallel()
	for _, k := range audit.Kinds {
		require.NotEqual(t, string(k), kindLabel(k), "kind %s has no words", k)
	}
	var buf bytes.Buffer
	require.NoError(t, History(Page{Title: "History"}, HistoryView{Summary: &store.AuditSummary{}, Kinds: audit.Kinds}).Render(context.Background(), &buf))
	doc, err := goquery.NewDocumentFromReader(&buf)
	require.NoError(t, err)
	require.Equal(t, "Rollback failed (run.compensation_failed)",
		doc.Find(`select[name=kind] option[value="run.compensation_failed"]`).Text())
}
