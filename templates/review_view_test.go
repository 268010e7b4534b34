package templates

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/vocab"
)

func TestWordDiff(t *testing.T) {
	t.Parallel()

	changed := func(parts []DiffPart) []string {
		var out []string
		for _, p := range parts {
			if p.Changed {
				out = append(out, p.Text)
			}
		}
		return out
	}

	t.Run("MarksTheChangedWordOnly", func(t *testing.T) {
		from, to := WordDiff("Refund the order to ada@example.com today", "Refund the order to bob@example.com today")
		require.Equal(t, []string{"ada"}, changed(from))
		require.Equal(t, []string{"bob"}, changed(to))
		var joined strings.Builder
		for _, p := range to {
			joined.WriteString(p.Text)
		}
		require.Equal(t, "Refund the order to bob@example.com today", joined.String(), "the parts are the whole line")
	})

	t.Run("InsideALineDiff", func(t *testing.T) {
		lines := LineDiff("Dear Ada,\nYour refund of 80 EUR is on its way.\nRegards", "Dear Ada,\nYour refund of 800 EUR is on its way.\nRegards")
		var del, add *DiffLine
		for i := range lines {
			switch lines[i].Op {
			case "-":
				del = &lines[i]
			case "+":
				add = &lines[i]
			}
		}
		require.NotNil(t, del)
		require.NotNil(t, add)
		require.Equal(t, []string{"80"}, changed(del.Parts))
		require.Equal(t, []string{"800"}, changed(add.Parts))
	})

	t.Run("NoCapHidesTheChange", func(t *testing.T) {
		// The old diff gave up past 250,000 line pairs and showed both texts
		// whole. 2,000 lines each, one changed: the diff still finds it.
		var a, b strings.Builder
		for i := range 2000 {
			line := "line " + strings.Repeat("x", i%7) + " " + itoa(i) + "\n"
			a.WriteString(line)
			if i == 1234 {
				line = "line changed " + itoa(i) + "\n"
			}
			b.WriteString(line)
		}
		lines := LineDiff(a.String(), b.String())
		var ops []string
		for _, l := range lines {
			if l.Op != " " {
				ops = append(ops, l.Op+l.Text)
			}
		}
		require.Len(t, ops, 2, "one line removed, one added")
		require.Contains(t, ops[1], "changed 1234")
	})
}

func TestReviewValues(t *testing.T) {
	t.Parallel()

	t.Run("AmountsKeepCurrencyAndDecimals", func(t *testing.T) {
		var params map[string]any
		dec := json.NewDecoder(strings.NewReader(`{"amount": 842.00, "currency": "EUR", "quantity": 3}`))
		dec.UseNumber()
		require.NoError(t, dec.Decode(&params))
		got := map[string]Change{}
		for _, c := range Changes(nil, params) {
			got[c.Field] = c
		}
		require.Equal(t, "842.00 EUR", got["/amount"].To)
		require.Equal(t, "3", got["/quantity"].To, "not every number is money")
	})

	t.Run("VerdictsAreWords", func(t *testing.T) {
		require.Equal(t, "changes requested", VerdictLabel(vocab.VerdictRequestChanges))
		require.Equal(t, "approved with edits", VerdictLabel(vocab.VerdictEdit))
		for _, v := range vocab.Verdicts() {
			require.NotContains(t, VerdictLabel(v), "_", v)
		}
	})

	t.Run("EditFieldsAreTyped", func(t *testing.T) {
		fields := EditFields(map[string]any{
			"to": "ada@example.com", "body": "line one\nline two", "amount": 80.0, "urgent": true,
			"payee": map[string]any{"iban": "DE1"}, "tags": []any{"a"}, "memo": "hi\u202E",
		}, map[string]string{"param/amount": "eighty"}, map[string]string{"/amount": "must be a number"})
		kinds := map[string]EditField{}
		var walk func([]EditField)
		walk = func(fs []EditField) {
			for _, f := range fs {
				kinds[f.Pointer] = f
				walk(f.Children)
			}
		}
		walk(fields)
		require.Equal(t, FieldText, kinds["/to"].Kind)
		require.Equal(t, FieldLongText, kinds["/body"].Kind)
		require.Equal(t, FieldNumber, kinds["/amount"].Kind)
		require.Equal(t, "eighty", kinds["/amount"].Value, "what the reviewer typed is kept")
		require.Equal(t, "80", kinds["/amount"].Original)
		require.Equal(t, "must be a number", kinds["/amount"].Error)
		require.Equal(t, FieldBoolean, kinds["/urgent"].Kind)
		require.Equal(t, FieldObject, kinds["/payee"].Kind)
		require.Equal(t, FieldText, kinds["/payee/iban"].Kind, "nested objects are walked")
		require.Equal(t, FieldJSON, kinds["/tags"].Kind)
		require.Equal(t, FieldJSON, kinds["/memo"].Kind, "an invisible character is spelt out as JSON")
		require.Equal(t, `"hi\u202e"`, kinds["/memo"].Value)
	})

	t.Run("FieldNamesHoldNoHiddenCharacter", func(t *testing.T) {
		require.Equal(t, `param/memo\u200b`, EditFieldName("/memo\u200b"))
		require.NotEqual(t, EditFieldName("/memo\u200b"), EditFieldName(`/memo\u200b`), "a literal escape is another key")
	})
}

func TestChangedExcerpt(t *testing.T) {
	t.Parallel()
	// A 3000-character letter with one word changed: too long to show open,
	// so the change is shown on its own, its unchanged surroundings cut.
	before := strings.Repeat("All is well here. ", 100) + "Refund 80 EUR. " + strings.Repeat("Kind regards and more. ", 60)
	after := strings.Replace(before, "Refund 80 EUR", "Refund 800 EUR", 1)
	lines := LineDiff(before, after)
	require.Greater(t, diffSize(lines), longText)
	ex, left := ChangedExcerpt(lines)
	require.Zero(t, left)
	require.Len(t, ex, 2)
	var shown int
	for _, l := range ex {
		for _, p := range l.Parts {
			shown += len([]rune(p.Text))
			if p.Changed {
				require.Contains(t, []string{"80", "800"}, p.Text)
			}
		}
	}
	require.Less(t, shown, 600, "the excerpt is short")
}
