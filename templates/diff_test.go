package templates

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestChanges(t *testing.T) {
	t.Parallel()

	byField := func(cs []Change) map[string]Change {
		out := map[string]Change{}
		for _, c := range cs {
			_, dup := out[c.Field]
			require.False(t, dup, "%s shown twice", c.Field)
			out[c.Field] = c
		}
		return out
	}

	t.Run("NestedAndDottedKeysDoNotCollide", func(t *testing.T) {
		// The table once showed both as "payee.iban", one of them hidden.
		got := byField(Changes(nil, map[string]any{
			"payee":      map[string]any{"iban": "DE-NESTED-RUNS"},
			"payee.iban": "DE-LITERAL-HARMLESS",
		}))
		require.Len(t, got, 2)
		require.Equal(t, "DE-NESTED-RUNS", got["/payee/iban"].To)
		require.Equal(t, "DE-LITERAL-HARMLESS", got["/payee.iban"].To)
	})

	t.Run("PointerEscaping", func(t *testing.T) {
		got := byField(Changes(nil, map[string]any{
			"a":   map[string]any{"b": 1.0, "~1": 2.0},
			"a/b": 3.0,
			"a~1": 4.0,
			"":    5.0,
		}))
		require.Equal(t, "1", got["/a/b"].To)
		require.Equal(t, "2", got["/a/~01"].To)
		require.Equal(t, "3", got["/a~1b"].To)
		require.Equal(t, "4", got["/a~01"].To)
		require.Equal(t, "5", got["/"].To)
		require.Len(t, got, 5)
	})

	t.Run("ValuesKeepTheirType", func(t *testing.T) {
		got := byField(Changes(
			map[string]any{"amount": "5", "note": nil, "gone": "x", "empty": map[string]any{}},
			map[string]any{"amount": 5.0, "note": "null", "new": true, "empty": map[string]any{}, "list": []any{"a", 1.0}},
		))
		require.True(t, got["/amount"].Changed, `"5" became 5`)
		require.Equal(t, "string", got["/amount"].FromKind)
		require.Equal(t, "number", got["/amount"].ToKind)
		require.True(t, got["/note"].Changed, `null became "null"`)
		require.Equal(t, "null", got["/note"].From)
		require.Equal(t, "—", got["/gone"].To)
		require.Equal(t, "", got["/gone"].ToKind)
		require.Equal(t, "—", got["/new"].From)
		require.Equal(t, "boolean", got["/new"].ToKind)
		require.Equal(t, "{}", got["/empty"].To, "an empty object still has a row")
		require.False(t, got["/empty"].Changed)
		require.Equal(t, `["a",1]`, got["/list"].To)
	})

	t.Run("SortedByPath", func(t *testing.T) {
		cs := Changes(map[string]any{"b": "1"}, map[string]any{"a": map[string]any{"z": "1"}, "c": "2"})
		var fields []string
		for _, c := range cs {
			fields = append(fields, c.Field)
		}
		require.Equal(t, "/a/z /b /c", strings.Join(fields, " "))
	})
}
