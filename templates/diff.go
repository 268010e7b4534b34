package templates

import (
	"sort"
	"strings"
)

// Change is one parameter of an action: what it is now and what is proposed.
type Change struct {
	Field   string
	From    string
	To      string
	Changed bool
	Lines   []DiffLine // a line diff, for multi-line text
}

// DiffLine is one line of a line diff: Op is " ", "-" or "+".
type DiffLine struct {
	Op   string
	Text string
}

// Changes compares the present state with the proposed parameters, field by
// field (nested objects are flattened to dotted names).
func Changes(current, proposed map[string]any) []Change {
	cur, prop := flatten("", current), flatten("", proposed)
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
		c := Change{Field: f, From: from, To: to, Changed: from != to || hadFrom != hasTo}
		if !hadFrom {
			c.From = "—"
		}
		if !hasTo {
			c.To = "—"
		}
		if c.Changed && (strings.Contains(from, "\n") || strings.Contains(to, "\n") || len(from) > 60 || len(to) > 60) {
			c.Lines = LineDiff(from, to)
		}
		out = append(out, c)
	}
	return out
}

func flatten(prefix string, m map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			for sk, sv := range flatten(name, sub) {
				out[sk] = sv
			}
			continue
		}
		out[name] = value(v)
	}
	return out
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
