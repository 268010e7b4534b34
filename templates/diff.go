package templates

import (
	"encoding/json"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/sergi/go-diff/diffmatchpatch"
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
	// For a changed one-line string: both sides with the changed words marked.
	FromParts, ToParts []DiffPart
}

// DiffLine is one line of a line diff: Op is " ", "-" or "+".
type DiffLine struct {
	Op    string
	Text  string
	Parts []DiffPart // for a changed line paired with its counterpart: the words that changed
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
		} else if c.Changed && from.kind == "string" && to.kind == "string" && from.text != "" && to.text != "" {
			c.FromParts, c.ToParts = WordDiff(from.text, to.text)
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
		l := leaf{text: paramValue(v), kind: kind(v)}
		// An amount keeps its currency beside it, as the reviewer reads it.
		if cur, ok := m["currency"].(string); ok && l.kind == "number" && amountKey(k) {
			l.text += " " + cur
		}
		out[name] = l
	}
}

// amountKey reports whether a key names a sum of money.
func amountKey(k string) bool {
	k = strings.ToLower(k)
	for _, w := range []string{"amount", "total", "price", "cost", "fee", "refund"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
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

// LineDiff returns a line diff of a and b (github.com/sergi/go-diff, Myers),
// and marks, in each removed line paired with an added one, the words that
// changed. There is no size cap that would hide a change: the inputs are
// bounded by the step output limit (COUNTERSIGN_MAX_STEP_OUTPUT), and
// go-diff's own deadline bounds the work, after which the diff is coarser
// but still complete. A long single line is cut into sentences first so that
// a one-paragraph document still shows where it changed.
func LineDiff(a, b string) []DiffLine {
	dmp := diffmatchpatch.New()
	dmp.DiffTimeout = diffTimeout
	al, bl := split(a), split(b)
	ar, br, lines := linesToRunes(al, bl)
	var out []DiffLine
	var dels, adds []string
	flush := func() {
		for i, l := range dels {
			d := DiffLine{Op: "-", Text: l}
			if i < len(adds) {
				d.Parts, _ = WordDiff(l, adds[i])
			}
			out = append(out, d)
		}
		for i, l := range adds {
			d := DiffLine{Op: "+", Text: l}
			if i < len(dels) {
				_, d.Parts = WordDiff(dels[i], l)
			}
			out = append(out, d)
		}
		dels, adds = nil, nil
	}
	for _, d := range dmp.DiffMainRunes(ar, br, false) {
		for _, r := range d.Text {
			l := lines[r]
			switch d.Type {
			case diffmatchpatch.DiffDelete:
				dels = append(dels, l)
			case diffmatchpatch.DiffInsert:
				adds = append(adds, l)
			default:
				flush()
				out = append(out, DiffLine{Op: " ", Text: l})
			}
		}
	}
	flush()
	return out
}

// diffTimeout bounds go-diff's work on one pair of texts.
const diffTimeout = time.Second

// DiffPart is a piece of a line in a word diff; Changed marks the words that
// differ from the other side.
type DiffPart struct {
	Text    string
	Changed bool
}

// WordDiff compares two lines word by word and returns each side as parts,
// the changed words marked.
func WordDiff(a, b string) (from, to []DiffPart) {
	dmp := diffmatchpatch.New()
	dmp.DiffTimeout = diffTimeout
	ar, br, words := linesToRunes(words(a), words(b))
	add := func(parts []DiffPart, text string, changed bool) []DiffPart {
		if n := len(parts); n > 0 && parts[n-1].Changed == changed {
			parts[n-1].Text += text
			return parts
		}
		return append(parts, DiffPart{Text: text, Changed: changed})
	}
	for _, d := range dmp.DiffMainRunes(ar, br, false) {
		var text strings.Builder
		for _, r := range d.Text {
			text.WriteString(words[r])
		}
		switch d.Type {
		case diffmatchpatch.DiffDelete:
			from = add(from, text.String(), true)
		case diffmatchpatch.DiffInsert:
			to = add(to, text.String(), true)
		default:
			from = add(from, text.String(), false)
			to = add(to, text.String(), false)
		}
	}
	return from, to
}

// linesToRunes numbers the distinct strings of a and b, so that go-diff
// compares whole lines or words as single symbols (its own line mode, for
// tokens it does not cut itself).
//
// It is written without a closure and without a variable-sized make on
// purpose: with Go 1.26.8 an earlier version (a closure returning
// make([]rune, len(ss))) corrupted memory, and the crash went away with
// -gcflags=-d=variablemakethreshold=0, which keeps such makes off the stack:
// it looks like a compiler bug. TestWordDiffRandom guards it.
func linesToRunes(a, b []string) (ar, br []rune, table []string) {
	index := map[string]rune{}
	ar, table = symbols(a, index, table)
	br, table = symbols(b, index, table)
	return ar, br, table
}

// symbols numbers the strings of ss, adding new ones to index and table.
func symbols(ss []string, index map[string]rune, table []string) ([]rune, []string) {
	var out []rune
	for _, s := range ss {
		r, ok := index[s]
		if !ok {
			r = rune(len(table))
			index[s] = r
			table = append(table, s)
		}
		out = append(out, r)
	}
	return out, table
}

// words cuts a line into words, runs of spaces and single other characters,
// keeping everything, so that the parts join back into the line.
func words(s string) []string {
	var out []string
	start := -1
	kind := func(r rune) int {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_':
			return 1
		case unicode.IsSpace(r):
			return 2
		}
		return 0
	}
	prev := -1
	for i, r := range s {
		k := kind(r)
		if start >= 0 && (k != prev || k == 0) {
			out = append(out, s[start:i])
			start = -1
		}
		if start < 0 {
			start = i
		}
		prev = k
	}
	if start >= 0 {
		out = append(out, s[start:])
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
