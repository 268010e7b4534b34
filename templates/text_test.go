package templates

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/a-h/templ"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
)

// listed are the characters issue 9 names: bidi embeddings and overrides,
// bidi isolates, zero-width characters and marks, and the BOM.
func listed() []rune {
	var out []rune
	for _, span := range [][2]rune{{0x202A, 0x202E}, {0x2066, 0x2069}, {0x200B, 0x200F}, {0xFEFF, 0xFEFF}} {
		for r := span[0]; r <= span[1]; r++ {
			out = append(out, r)
		}
	}
	return out
}

func render(t *testing.T, c templ.Component) *goquery.Document {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, c.Render(context.Background(), &b))
	doc, err := goquery.NewDocumentFromReader(&b)
	require.NoError(t, err)
	return doc
}

func TestVisible(t *testing.T) {
	t.Parallel()

	t.Run("PlainTextIsOnePiece", func(t *testing.T) {
		require.Equal(t, []Piece{{Text: "Pay 100 EUR to Ann — عربى"}}, Visible("Pay 100 EUR to Ann — عربى", false))
		require.Nil(t, Visible("", false))
	})

	t.Run("EveryListedCharacterIsMarked", func(t *testing.T) {
		for _, r := range listed() {
			got := Visible("a"+string(r)+"b", true)
			want := []Piece{{Text: "a"}, {Text: fmt.Sprintf("⟨U+%04X⟩", r), Mark: true, Title: fmt.Sprintf("U+%04X %s", r, runeName(r))}, {Text: "b"}}
			require.Equal(t, want, got, "U+%04X", r)
			require.NotEqual(t, "FORMAT CHARACTER", runeName(r), "U+%04X has its own name", r)
		}
		require.Equal(t, "U+202E RIGHT-TO-LEFT OVERRIDE", Visible("\u202E", false)[0].Title)
	})

	t.Run("OtherFormatAndControlCharacters", func(t *testing.T) {
		for _, r := range []rune{0x00AD, 0x0007, 0x007F, 0x0085, 0x2060, 0x061C, 0xE0041, 0x2028, 0x3164} {
			p := Visible(string(r), false)
			require.Len(t, p, 1, "U+%04X", r)
			require.True(t, p[0].Mark, "U+%04X", r)
		}
		require.Equal(t, "U+E0041 TAG CHARACTER", Visible("\U000E0041", false)[0].Title)
	})

	t.Run("InvisibleMarksAndTags", func(t *testing.T) {
		spans := [][2]rune{{0xFE00, 0xFE0F}, {0xE0100, 0xE01EF}, {0x034F, 0x034F}, {0xE0000, 0xE007F},
			{0x115F, 0x1160}, {0x3164, 0x3164}, {0xFFA0, 0xFFA0}}
		for _, span := range spans {
			for r := span[0]; r <= span[1]; r++ {
				p := Visible("a"+string(r)+"b", true)
				require.Len(t, p, 3, "U+%04X", r)
				require.True(t, p[1].Mark, "U+%04X", r)
				require.NotEqual(t, "FORMAT CHARACTER", runeName(r), "U+%04X has its own name", r)
			}
		}
		require.Equal(t, "U+FE0F VARIATION SELECTOR", Visible("\uFE0F", false)[0].Title)
		require.Equal(t, "U+E0100 VARIATION SELECTOR", Visible("\U000E0100", false)[0].Title)
		require.Equal(t, "U+034F COMBINING GRAPHEME JOINER", Visible("\u034F", false)[0].Title)
		require.Equal(t, "U+E0000 TAG CHARACTER", Visible("\U000E0000", false)[0].Title)
		require.Equal(t, []Piece{{Text: "e\u0301"}}, Visible("e\u0301", false), "a visible combining mark stays")
	})

	t.Run("NewlinesAndTabsOnlyInMultiLineFields", func(t *testing.T) {
		require.Equal(t, []Piece{{Text: "a\n\tb"}}, Visible("a\n\tb", true))
		single := Visible("a\n\tb\r", false)
		require.Len(t, single, 5)
		require.Equal(t, "⟨U+000A⟩", single[1].Text)
		require.Equal(t, "⟨U+0009⟩", single[2].Text)
		require.Equal(t, "⟨U+000D⟩", Visible("a\r", true)[1].Text, "a carriage return is marked even in a multi-line field")
	})
}

func TestTextComponents(t *testing.T) {
	t.Parallel()

	t.Run("MarksAreEscapedSpans", func(t *testing.T) {
		doc := render(t, Text("<b>pay</b> \u202Eeviltxt.exe"))
		mark := doc.Find("span.invisible")
		require.Equal(t, 1, mark.Length())
		require.Equal(t, "⟨U+202E⟩", mark.Text())
		title, _ := mark.Attr("title")
		require.Equal(t, "U+202E RIGHT-TO-LEFT OVERRIDE", title)
		require.Equal(t, "<b>pay</b> ⟨U+202E⟩eviltxt.exe", doc.Text(), "escaped, and the override is gone")
		require.Zero(t, doc.Find("b").Length())
	})

	t.Run("LongTextIsCollapsedWithItsLength", func(t *testing.T) {
		long := strings.Repeat("é", 200_000) + "\u202E"
		for name, c := range map[string]templ.Component{"Text": Text(long), "Block": Block(long)} {
			doc := render(t, c)
			d := doc.Find("details.long")
			require.Equal(t, 1, d.Length(), name)
			_, open := d.Attr("open")
			require.False(t, open, "%s starts closed", name)
			require.Equal(t, "200001 characters", d.Find("summary [data-testid=length]").Text(), name)
			require.Equal(t, previewText+1, len([]rune(d.Find("summary .preview").Text())), "%s: the first characters and an ellipsis", name)
			require.Equal(t, 200_000, strings.Count(d.Find(".full").Text(), "é"), "%s: the whole text is one click away", name)
			require.Equal(t, 1, d.Find(".full span.invisible").Length(), name)
		}
		short := render(t, Text(strings.Repeat("x", longText)))
		require.Zero(t, short.Find("details").Length(), "up to the limit, a text is shown as it is")
	})

	t.Run("ClipCutsWhereNoBlockFits", func(t *testing.T) {
		doc := render(t, Clip(strings.Repeat("a", 200_000)))
		require.Zero(t, doc.Find("details").Length())
		require.Equal(t, "… (200000 characters)", doc.Find("[data-testid=length]").Text())
		require.Equal(t, strings.Repeat("a", previewText), strings.TrimSpace(strings.TrimSuffix(doc.Text(), "… (200000 characters)")))
	})

	t.Run("JSONInATextareaSpellsOutHiddenCharacters", func(t *testing.T) {
		in := map[string]any{"iban": "DE\u202E12", "emoji": "\U000E0041x", "body": "a\nb"}
		b, err := json.MarshalIndent(in, "", "  ")
		require.NoError(t, err)
		got := escapeJSON(string(b))
		require.Contains(t, got, `DE\u202e12`)
		require.Contains(t, got, `\udb40\udc41x`)
		for _, r := range listed() {
			require.NotContains(t, got, string(r))
		}
		var back map[string]any
		require.NoError(t, json.Unmarshal([]byte(got), &back))
		require.Equal(t, in, back, "the same JSON")
	})
}

func TestClassesComeFromClosedSets(t *testing.T) {
	t.Parallel()
	const hostile = "high x-injected"
	for name, c := range map[string]templ.Component{
		"TierBadge":   TierBadge(hostile),
		"StatusBadge": StatusBadge(hostile),
		"Timeline":    Timeline(nil),
	} {
		doc := render(t, c)
		doc.Find("[class]").Each(func(_ int, s *goquery.Selection) {
			cls, _ := s.Attr("class")
			require.NotContains(t, strings.Fields(cls), "x-injected", name)
		})
	}
	require.Equal(t, "badge tier-unknown", attr(t, render(t, TierBadge(hostile)), "[data-testid=tier]", "class"))
	require.Equal(t, "high x-injected", render(t, TierBadge(hostile)).Find("[data-testid=tier]").Text(), "the text is shown, escaped")
	require.Equal(t, "badge status-unknown", attr(t, render(t, StatusBadge(hostile)), "[data-testid=status]", "class"))
	require.Equal(t, "badge tier-explicit", attr(t, render(t, TierBadge("explicit")), "[data-testid=tier]", "class"))
	require.Equal(t, "badge status-waiting_human", attr(t, render(t, StatusBadge("waiting_human")), "[data-testid=status]", "class"))
	require.Equal(t, "risk-unknown", riskClass(hostile))
	require.Equal(t, "risk-high", riskClass("high"))
	require.Equal(t, "request-unknown", requestClass("pending x"))
	require.Equal(t, "step-unknown", stepClass("failed\" onmouseover=x"))
	require.Equal(t, "unknown", verdictKey("approve x"))
}

func attr(t *testing.T, doc *goquery.Document, sel, name string) string {
	t.Helper()
	v, ok := doc.Find(sel).Attr(name)
	require.True(t, ok, "%s has no %s", sel, name)
	return v
}

// TestAuditTableMarksSubjects: an event's subject can come from outside (a
// user's email, a token name) and is shown through Text like the actor.
func TestAuditTableMarksSubjects(t *testing.T) {
	t.Parallel()
	e := &store.AuditEvent{ID: 1, Seq: 1, At: time.Now(), Actor: "a@example.com", Kind: "user.created",
		SubjectType: "user\u202E", SubjectID: "ann\U000E0041@example.com\uFE0F", Details: json.RawMessage(`{}`)}
	doc := render(t, AuditTable([]*store.AuditEvent{e}, nil))
	subject := doc.Find("[data-testid=subject]")
	require.Equal(t, 1, subject.Length())
	require.Equal(t, 3, subject.Find("span.invisible").Length())
	require.Equal(t, "user⟨U+202E⟩ ann⟨U+E0041⟩@example.com⟨U+FE0F⟩", strings.TrimSpace(subject.Text()))
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                                     "—",
		850 * time.Millisecond:                "850 ms",
		12340 * time.Millisecond:              "12.34s",
		59999 * time.Millisecond:              "1m 0s",
		5*time.Minute + 6100*time.Millisecond: "5m 6s",
		59*time.Minute + 59*time.Second + 600*time.Millisecond: "1h 0m",
		2*time.Hour + 5*time.Minute + 20*time.Second:           "2h 5m",
		26 * time.Hour: "1d 2h",
	} {
		require.Equal(t, want, duration(d), d.String())
	}
}
