// Package templates holds the console's templ components and the small view
// types they display. Everything a model generated is rendered as escaped
// text inside containers where htmx is disabled (hx-disable).
package templates

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Page is what every page's layout needs.
type Page struct {
	Title string
	User  *store.User // nil when signed out
	CSRF  string
	Nav   string // the active section
	Flash string
	Error string
}

// CanDecide reports whether the signed-in user's role may decide anything.
func (p Page) CanDecide() bool {
	return p.User != nil && p.User.Role.CanDecide()
}

// IsAdmin reports whether the signed-in user is an admin.
func (p Page) IsAdmin() bool { return p.User != nil && p.User.Role == vocab.RoleAdmin }

func csrfHeaders(token string) string {
	b, _ := json.Marshal(map[string]string{"X-CSRF-Token": token})
	return string(b)
}

// ago renders a duration since t for people: "3m", "2h 5m", "4d".
func ago(t time.Time) string {
	return human(time.Since(t))
}

func human(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

// timeLeft renders a deadline: "in 3h 5m" or "overdue by 4m".
func timeLeft(deadline *time.Time) string {
	if deadline == nil {
		return "none"
	}
	d := time.Until(*deadline)
	if d < 0 {
		return "overdue by " + human(d)
	}
	return "in " + human(d)
}

func overdue(deadline *time.Time) bool {
	return deadline != nil && time.Until(*deadline) < 0
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

func stampPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return stamp(*t)
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// pretty indents JSON for display; invalid JSON is shown as it is.
func pretty(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// value renders one parameter value compactly.
func value(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return "—"
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%g", x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func itoa(n int) string { return fmt.Sprintf("%d", n) }

// duration writes a step's or a decision's time for people: "850 ms",
// "12.34s", then whole seconds ("5m 6s") and minutes ("2h 5m"), since
// hundredths of a second (Go's "5m6.1s") say nothing at that scale.
func duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute-5*time.Millisecond: // rounds to under a minute
		return d.Round(10 * time.Millisecond).String()
	case d < time.Hour-time.Second/2: // rounds to under an hour
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return human(d.Round(time.Minute))
}

func tierLabel(tier vocab.Tier) string {
	switch tier {
	case vocab.TierExplicit:
		return "Explicit"
	case vocab.TierBatched:
		return "Batched"
	case vocab.TierAuto:
		return "Auto"
	}
	return string(tier)
}

// statusLabel shows any status in words: "waiting human", "changes requested".
func statusLabel[T ~string](status T) string { return strings.ReplaceAll(string(status), "_", " ") }

func secondsDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func nan() float64 { return math.NaN() }

// filterNote says which filter an empty list was filtered by.
func filterNote(v UnusableView) string {
	switch {
	case v.Category != "" && v.Workflow != "":
		return " in " + string(v.Category) + " for " + v.Workflow
	case v.Category != "":
		return " in " + string(v.Category)
	case v.Workflow != "":
		return " for " + v.Workflow
	}
	return ""
}
