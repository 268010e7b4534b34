package templates

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/countersign/countersign/vocab"
)

// EditField is one control of the edit form, built from a proposed parameter:
// its JSON Pointer, the kind of control its JSON type calls for, the value to
// show (the proposal's, or what the reviewer typed) and an error at the field.
// An object with fields is a group of its children.
type EditField struct {
	Key      string
	Pointer  string
	Kind     string // text, longtext, number, boolean, json, object
	Value    string
	Original string
	Error    string
	Children []EditField
}

// EditFieldName is the form field that carries the parameter at pointer. An
// invisible character in a key is spelt as a \u escape (and a backslash
// doubled, so that two keys never share a name): no attribute of the page
// holds one raw.
func EditFieldName(pointer string) string { return "param" + spell(pointer) }

// spell writes every character Visible would mark as a \u escape and doubles
// backslashes.
func spell(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n' || r == '\t':
			fmt.Fprintf(&b, `\u%04x`, r)
		case hidden(r, false):
			b.WriteString(escapeJSON(string(r)))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Edit field kinds.
const (
	FieldText     = "text"
	FieldLongText = "longtext"
	FieldNumber   = "number"
	FieldBoolean  = "boolean"
	FieldJSON     = "json" // arrays, null and empty objects: edited as JSON
	FieldObject   = "object"
)

// FieldKind is the control a parameter value is edited with.
func FieldKind(v any) string {
	switch x := v.(type) {
	case string:
		if hasHidden(x) {
			// Spelt as a JSON string with \u escapes: an input box cannot
			// mark an invisible character, and it must not hide one.
			return FieldJSON
		}
		if strings.Contains(x, "\n") || len(x) > 80 {
			return FieldLongText
		}
		return FieldText
	case float64, json.Number:
		return FieldNumber
	case bool:
		return FieldBoolean
	case map[string]any:
		if len(x) > 0 {
			return FieldObject
		}
	}
	return FieldJSON
}

// FieldText renders a value as its control holds it.
func FieldValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		if x {
			return "true"
		}
		return "false"
	case float64:
		return fmt.Sprintf("%v", x)
	case json.Number:
		return x.String()
	}
	return jsonText(v)
}

// jsonText is v as compact JSON, with <, > and & left as they are.
func jsonText(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSuffix(b.String(), "\n")
}

// EditFields builds the edit form from the proposed parameters; typed holds
// what the reviewer sent (by form field name) and errs the errors by pointer.
func EditFields(params map[string]any, typed map[string]string, errs map[string]string) []EditField {
	return editFields("", params, typed, errs)
}

func editFields(prefix string, m map[string]any, typed map[string]string, errs map[string]string) []EditField {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]EditField, 0, len(keys))
	for _, k := range keys {
		v := m[k]
		ptr := prefix + "/" + pointerToken(k)
		f := EditField{Key: k, Pointer: ptr, Kind: FieldKind(v), Error: errs[ptr]}
		if f.Kind == FieldObject {
			f.Children = editFields(ptr, v.(map[string]any), typed, errs)
		} else {
			f.Original = FieldValue(v)
			if f.Kind == FieldJSON {
				f.Original = escapeJSON(jsonText(v))
			}
			f.Value = f.Original
			if t, ok := typed[EditFieldName(ptr)]; ok {
				f.Value = t
			}
		}
		out = append(out, f)
	}
	return out
}

// VerdictLabel is a verdict in words: the vocabulary's own label for the four
// verdicts, and anything else (an older record's word) with its underscores
// read as spaces.
func VerdictLabel(v vocab.Verdict) string {
	if v.Valid() {
		return v.Label()
	}
	return statusLabel(v)
}

// money formats an amount with two decimals.
func money(f float64) string { return fmt.Sprintf("%.2f", f) }

// hasHidden reports whether s holds a character Visible would mark.
func hasHidden(s string) bool {
	for _, r := range s {
		if hidden(r, true) {
			return true
		}
	}
	return false
}

// Bounds of the excerpt of a long diff.
const (
	excerptLines   = 40
	excerptContext = 50 // characters kept each side of a change in a long unchanged stretch
)

// ChangedExcerpt is what a diff too long to show open shows anyway: its
// changed lines only, long unchanged stretches inside them cut to their ends,
// so that a change is never hidden behind a collapsed block; the whole diff
// stays one click away. It reports how many changed lines it left out.
func ChangedExcerpt(lines []DiffLine) ([]DiffLine, int) {
	var out []DiffLine
	left := 0
	for _, l := range lines {
		if l.Op == " " {
			continue
		}
		if len(out) == excerptLines {
			left++
			continue
		}
		e := DiffLine{Op: l.Op}
		parts := l.Parts
		if len(parts) == 0 {
			parts = []DiffPart{{Text: l.Text, Changed: false}}
		}
		for _, p := range parts {
			if !p.Changed {
				p.Text = elide(p.Text)
			}
			e.Parts = append(e.Parts, p)
		}
		out = append(out, e)
	}
	return out, left
}

// elide keeps the ends of a long unchanged stretch.
func elide(s string) string {
	r := []rune(s)
	if len(r) <= 3*excerptContext {
		return s
	}
	return string(r[:excerptContext]) + " … " + string(r[len(r)-excerptContext:])
}
