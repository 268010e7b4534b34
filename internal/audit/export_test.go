package audit_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testdb"
)

// TestExportNeutralizesFormulas exports events whose actor, subject and rule
// a spreadsheet would run as formulas: the CSV cells start with a quote, and
// the JSON Lines export is unchanged.
func TestExportNeutralizesFormulas(t *testing.T) {
	t.Parallel()
	pool, _ := testdb.Pool(t)
	ctx := context.Background()
	hostile := map[string]string{
		"=HYPERLINK(\"http://evil.example\")": "'=HYPERLINK(\"http://evil.example\")",
		"+1+cmd|' /C calc'!A0":                "'+1+cmd|' /C calc'!A0",
		"-2+3":                                "'-2+3",
		"@SUM(A1:A9)":                         "'@SUM(A1:A9)",
		"\t=1+1":                              "'\t=1+1",
		"\r=1+1":                              "'\r=1+1",
		"'=1+1":                               "''=1+1",
		"ann@example.com":                     "ann@example.com",
	}
	for actor := range hostile {
		_, err := store.AuditAppend(ctx, pool, actor, "auth.login_failed", "user", actor, nil,
			map[string]any{"rule": actor, "verdict": "reject"})
		require.NoError(t, err)
	}
	_, err := audit.Chain(ctx, pool)
	require.NoError(t, err)

	var out bytes.Buffer
	n, err := audit.Export(ctx, pool, store.AuditFilter{}, audit.CSV, &out, nil)
	require.NoError(t, err)
	require.Equal(t, len(hostile), n)
	rows, err := csv.NewReader(&out).ReadAll()
	require.NoError(t, err)
	require.Equal(t, audit.CSVHeader, rows[0])
	col := func(name string) int {
		for i, h := range audit.CSVHeader {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return 0
	}
	seen := 0
	for _, row := range rows[1:] {
		// The csv reader turns \r\n and a lone \r inside quotes into \n.
		got := strings.ReplaceAll(row[col("actor")], "\n", "\r")
		var original string
		for a, want := range hostile {
			if strings.ReplaceAll(want, "\n", "\r") == got {
				original = a
			}
		}
		require.NotEmpty(t, original, "unexpected actor cell %q", got)
		seen++
		require.Equal(t, row[col("actor")], row[col("subject_id")])
		require.Equal(t, row[col("actor")], row[col("rule")])
		for _, cell := range row {
			if cell != "" {
				require.NotContains(t, "=+-@\t\r", cell[:1], "cell %q", cell)
			}
		}
		if original != "ann@example.com" {
			require.True(t, strings.HasPrefix(got, "'"))
		}
		require.Equal(t, strings.ReplaceAll(original, "\r", "\n"), strings.ReplaceAll(strings.TrimPrefix(got, "'"), "\r", "\n"),
			"one leading quote removed gives the original")
	}
	require.Equal(t, len(hostile), seen)

	out.Reset()
	_, err = audit.Export(ctx, pool, store.AuditFilter{}, audit.JSONL, &out, nil)
	require.NoError(t, err)
	actors := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var l audit.Line
		require.NoError(t, json.Unmarshal([]byte(line), &l))
		actors[l.Actor] = true
	}
	for a := range hostile {
		require.True(t, actors[a], "JSON Lines keep %q as it is", a)
	}
}
