package email_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/notice/email"
)

// TestRender: model text is escaped in the HTML part and its invisible
// characters are written out in every part; a digest lists every item.
func TestRender(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)
	it := notice.Item{Kind: notice.RequestWaiting, Title: notice.RequestWaiting.Label(), ActionKind: "email.send", Target: "<b>ops</b>",
		Summary: "Pay <script>alert(1)</script> \u202Eevil\u200B", Risk: "high", Rule: "r", Deadline: &deadline,
		Link: "https://cs.example.com/requests/x"}

	t.Run("One", func(t *testing.T) {
		subject, text, html, err := email.Render(notice.Message{Items: []notice.Item{it}})
		require.NoError(t, err)
		require.NotContains(t, html, "<script>")
		require.NotContains(t, html, "<b>ops")
		require.Contains(t, html, "&lt;script&gt;")
		require.Contains(t, html, `title="U+202E RIGHT-TO-LEFT OVERRIDE"`)
		for _, part := range []string{subject, text, html} {
			require.Contains(t, part, "⟨U+202E⟩")
			require.Contains(t, part, "⟨U+200B⟩")
			require.NotContains(t, part, "\u202E")
			require.NotContains(t, part, "\u200B")
		}
		require.Contains(t, text, "Action:   email.send on <b>ops</b>")
		require.Contains(t, text, "Deadline: 2026-11-22 09:30 UTC")
		require.Contains(t, html, `<a href="https://cs.example.com/requests/x">`)
	})

	t.Run("Digest", func(t *testing.T) {
		second := it
		second.Kind, second.Title, second.Link = notice.DeadlineNear, notice.DeadlineNear.Label(), "https://cs.example.com/requests/y"
		subject, text, html, err := email.Render(notice.Message{Items: []notice.Item{it, second}})
		require.NoError(t, err)
		require.Equal(t, "Countersign: 2 notifications", subject)
		require.Equal(t, 2, strings.Count(text, "Review it (you will be asked to sign in)"))
		require.Contains(t, html, "requests/y")
	})

	t.Run("LongSubject", func(t *testing.T) {
		long := it
		long.Summary = strings.Repeat("x", 1000)
		subject, _, _, err := email.Render(notice.Message{Items: []notice.Item{long}})
		require.NoError(t, err)
		require.LessOrEqual(t, len([]rune(subject)), 151)
	})
}
