package templates

import (
	"encoding/json"
	"sort"
	"strings"
)

// Change is one parameter of an action: what it is now and what is proposed.
// Field is the parameter's JSON Pointer (RFC 6901: "/payee/iban" is a nested
// key, "/payee.iban" a key with a dot), so that two different parameters never
// show the same name. FromKind and ToKind are the JSON types ("string",
// "number", "boolean", "null", "object", "array"; "" when absent), shown next
// to values that are not strings so that 5 and "5" do not look alike.
type Change struct {
	Field    string
	From     string
	To       string
	FromKind string
	ToKind   string
	Changed  bool
	Lines    []DiffLine // a line diff, for multi-line text
}

// DiffLine is one line of a line diff: Op is " ", "-" or "+".
type DiffLine struct {
	Op   string
	Text string
}

// leaf is one parameter value, as shown.
type leaf struct {
	text, kind string
}

// Changes compares the present state with the proposed parameters, field by
// field: nested objects are walked down to their leaves, each named by its
// JSON Pointer; arrays and empty objects are shown whole, as JSON.
func Changes(current, proposed map[string]any) []Change {
	cur, prop := map[string]leaf{}, map[string]leaf{}
	flatten("", current, cur)
	flatten("", proposed, prop)
	seen := map[string]bool{}
	var fields []string
	for k := range prop {
		fields, seen[k] = append(fields, k), true
	}
	for k := range cur {
		if !seen[k] {
			fields = append(fields, k)
		}
	}
	sort.Strings(fields)
	out := make([]Change, 0, len(fields))
	for _, f := range fields {
		from, hadFrom := cur[f]
		to, hasTo := prop[f]
		c := Change{Field: f, From: from.text, To: to.text, FromKind: from.kind, ToKind: to.kind,
			Changed: from != to || hadFrom != hasTo}
		if !hadFrom {
			c.From = "—"
		}
		if !hasTo {
			c.To = "—"
		}
		if c.Changed && (strings.Contains(from.text, "\n") || strings.Contains(to.text, "\n") || len(from.text) > 60 || len(to.text) > 60) {
			c.Lines = LineDiff(from.text, to.text)
		}
		out = append(out, c)
	}
	return out
}

// flatten adds the leaves of m to out, named by their JSON Pointers under
// prefix.
func flatten(prefix string, m map[string]any, out map[string]leaf) {
	for k, v := range m {
		name := prefix + "/" + pointerToken(k)
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			flatten(name, sub, out)
			continue
		}
		out[name] = leaf{text: paramValue(v), kind: kind(v)}
	}
}

// pointerToken escapes one key for a JSON Pointer: "~" is "~0", "/" is "~1".
func pointerToken(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// paramValue renders a parameter value: strings as they are, anything else as
// JSON (null stays "null", unlike an absent value).
func paramValue(v any) string {
	if v == nil {
		return "null"
	}
	return value(v)
}

// kind names the JSON type of a decoded value.
func kind(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64, json.Number, int, int64:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return "value"
}

// LineDiff returns a line diff of a and b (longest common subsequence); long
// texts fall back to sentence-sized lines so that a one-paragraph document
// still shows what changed.
func LineDiff(a, b string) []DiffLine {
	al, bl := split(a), split(b)
	n, m := len(al), len(bl)
	if n*m > 250_000 { // too large to diff here: show both
		var out []DiffLine
		for _, l := range al {
			out = append(out, DiffLine{"-", l})
		}
		for _, l := range bl {
			out = append(out, DiffLine{"+", l})
		}
		return out
	}
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []DiffLine
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case al[i] == bl[j]:
			out = append(out, DiffLine{" ", al[i]})
			i, j = i+1, j+1
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, DiffLine{"-", al[i]})
			i++
		default:
			out = append(out, DiffLine{"+", bl[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, DiffLine{"-", al[i]})
	}
	for ; j < m; j++ {
		out = append(out, DiffLine{"+", bl[j]})
	}
	return out
}

// split cuts text into lines, and a long single line into sentences.
func split(s string) []string {
	if strings.Contains(s, "\n") {
		return strings.Split(s, "\n")
	}
	var out []string
	for len(s) > 0 {
		i := strings.Index(s, ". ")
		if i < 0 {
			out = append(out, s)
			break
		}
		out = append(out, s[:i+1])
		s = s[i+2:]
	}
	return out
}
