package templates

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Piece is a run of text ready to show: plain text, or one character that
// would otherwise be invisible or reorder what is around it, written out as a
// token (Mark true, Title naming the character).
type Piece struct {
	Text  string
	Mark  bool
	Title string
}

// Visible splits s into pieces so that every bidi control, invisible character
// and other format or control character (Unicode categories Cf, Cc, Zl, Zp, the
// Hangul fillers that render as blanks, variation selectors, the combining
// grapheme joiner and tag characters) becomes a visible marked token:
// model text must not be able to reorder or hide what a reviewer reads. A
// multi-line field keeps its newlines and tabs; a single-line field marks them
// too. Pieces of plain text are as long as possible.
func Visible(s string, multiline bool) []Piece {
	var out []Piece
	start := 0
	for i, r := range s {
		if !hidden(r, multiline) {
			continue
		}
		if start < i {
			out = append(out, Piece{Text: s[start:i]})
		}
		out = append(out, Piece{Text: fmt.Sprintf("⟨U+%04X⟩", r), Mark: true, Title: fmt.Sprintf("U+%04X %s", r, runeName(r))})
		start = i + utf8.RuneLen(r)
	}
	if start < len(s) {
		out = append(out, Piece{Text: s[start:]})
	}
	return out
}

// hidden reports whether r is shown as a token rather than as itself.
func hidden(r rune, multiline bool) bool {
	if multiline && (r == '\n' || r == '\t') {
		return false
	}
	if _, ok := runeNames[r]; ok {
		return true
	}
	return unicode.In(r, unicode.Cf, unicode.Cc, unicode.Zl, unicode.Zp) || invisibleMark(r)
}

// invisibleMark reports the characters that are not format characters but
// draw nothing: variation selectors and the combining grapheme joiner
// (nonspacing marks), and the whole tag block, unassigned code points
// included, which fonts draw as nothing. They can hide data in a text that
// looks like another (an emoji carrying a message, a name that differs from
// the one shown).
func invisibleMark(r rune) bool {
	return r == 0x034F || (r >= 0xFE00 && r <= 0xFE0F) || (r >= 0xE0100 && r <= 0xE01EF) ||
		(r >= 0xE0000 && r <= 0xE007F)
}

// runeNames names the characters a reviewer is most likely to meet; the rest
// of the marked ones get the name of their category.
var runeNames = map[rune]string{
	'\t':   "CHARACTER TABULATION",
	'\n':   "LINE FEED",
	'\r':   "CARRIAGE RETURN",
	0x00AD: "SOFT HYPHEN",
	0x034F: "COMBINING GRAPHEME JOINER",
	0x061C: "ARABIC LETTER MARK",
	0x115F: "HANGUL CHOSEONG FILLER",
	0x1160: "HANGUL JUNGSEONG FILLER",
	0x180E: "MONGOLIAN VOWEL SEPARATOR",
	0x200B: "ZERO WIDTH SPACE",
	0x200C: "ZERO WIDTH NON-JOINER",
	0x200D: "ZERO WIDTH JOINER",
	0x200E: "LEFT-TO-RIGHT MARK",
	0x200F: "RIGHT-TO-LEFT MARK",
	0x2028: "LINE SEPARATOR",
	0x2029: "PARAGRAPH SEPARATOR",
	0x202A: "LEFT-TO-RIGHT EMBEDDING",
	0x202B: "RIGHT-TO-LEFT EMBEDDING",
	0x202C: "POP DIRECTIONAL FORMATTING",
	0x202D: "LEFT-TO-RIGHT OVERRIDE",
	0x202E: "RIGHT-TO-LEFT OVERRIDE",
	0x2060: "WORD JOINER",
	0x2061: "FUNCTION APPLICATION",
	0x2062: "INVISIBLE TIMES",
	0x2063: "INVISIBLE SEPARATOR",
	0x2064: "INVISIBLE PLUS",
	0x2066: "LEFT-TO-RIGHT ISOLATE",
	0x2067: "RIGHT-TO-LEFT ISOLATE",
	0x2068: "FIRST STRONG ISOLATE",
	0x2069: "POP DIRECTIONAL ISOLATE",
	0x3164: "HANGUL FILLER",
	0xFEFF: "ZERO WIDTH NO-BREAK SPACE",
	0xFFA0: "HALFWIDTH HANGUL FILLER",
	0xFFF9: "INTERLINEAR ANNOTATION ANCHOR",
	0xFFFA: "INTERLINEAR ANNOTATION SEPARATOR",
	0xFFFB: "INTERLINEAR ANNOTATION TERMINATOR",
	0x0000: "NULL",
}

func runeName(r rune) string {
	if n, ok := runeNames[r]; ok {
		return n
	}
	switch {
	case unicode.Is(unicode.Cc, r):
		return "CONTROL CHARACTER"
	case r >= 0xE0000 && r <= 0xE007F:
		return "TAG CHARACTER"
	case r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF:
		return "VARIATION SELECTOR"
	case unicode.Is(unicode.Zl, r), unicode.Is(unicode.Zp, r):
		return "LINE BREAK"
	}
	return "FORMAT CHARACTER"
}

// Text longer than longText characters is shown collapsed, with its length
// and the first previewText characters, so that one huge field cannot freeze
// the page; the whole text is one click away.
const (
	longText    = 2000
	previewText = 300
)

// isLong reports whether s is shown collapsed.
func isLong(s string) bool { return len(s) > longText && utf8.RuneCountInString(s) > longText }

// preview returns the first previewText characters of s.
func preview(s string) string {
	n := 0
	for i := range s {
		if n == previewText {
			return s[:i]
		}
		n++
	}
	return s
}

// characters writes a length for people: "200000 characters".
func characters(s string) string {
	n := utf8.RuneCountInString(s)
	if n == 1 {
		return "1 character"
	}
	return fmt.Sprintf("%d characters", n)
}

// clip shortens s to previewText characters for places that cannot hold a
// collapsible block (a link, a summary); it returns the rest's length note.
func clip(s string) (string, string) {
	if !isLong(s) {
		return s, ""
	}
	return preview(s), "… (" + characters(s) + ")"
}

// diffSize counts the characters of a diff, to decide whether to collapse it.
func diffSize(lines []DiffLine) int {
	n := 0
	for _, l := range lines {
		n += utf8.RuneCountInString(l.Text) + 1
	}
	return n
}

// escapeJSON writes every character Visible would mark as a JSON \u escape.
// It is for JSON shown where markup cannot go (a textarea): the text means
// the same JSON, and what it hides is spelt out. json.Marshal output holds
// such characters only inside strings, where the escape is valid.
func escapeJSON(s string) string {
	var b strings.Builder
	for _, r := range s {
		if !hidden(r, true) {
			b.WriteRune(r)
			continue
		}
		if r > 0xFFFF {
			r1, r2 := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, r1, r2)
			continue
		}
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}

// plain is Visible as one string, for places that hold no markup (a page
// title): each hidden character is written as its token, and a long text is
// cut to its first characters.
func plain(s string) string {
	short, rest := clip(s)
	var b strings.Builder
	for _, p := range Visible(short, false) {
		b.WriteString(p.Text)
	}
	b.WriteString(rest)
	return b.String()
}
