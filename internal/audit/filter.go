package audit

import (
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// FilterNames are the names of the history filters, as query parameters and
// command-line flags alike.
var FilterNames = []string{"actor", "kind", "verdict", "workflow", "rule", "tier", "run", "since", "until"}

// ParseFilter reads the history filters through get (a query parameter or a
// flag by name) and checks them, so that the console, the API and the command
// line refuse the same mistakes with the same words.
func ParseFilter(get func(name string) string) (store.AuditFilter, error) {
	f := store.AuditFilter{Actor: get("actor"), Kind: get("kind"), Verdict: get("verdict"), Workflow: get("workflow"),
		Rule: get("rule"), Tier: get("tier"), RunID: get("run")}
	if f.Verdict != "" && !vocab.Verdict(f.Verdict).Valid() {
		return f, fmt.Errorf("verdict must be approve, reject, edit or request_changes")
	}
	if f.Kind != "" && !slices.Contains(Kinds, Kind(f.Kind)) {
		// A kind no event can have would list nothing, which reads as "no
		// such events" rather than as the typo it is.
		return f, fmt.Errorf("kind %q is not an event kind (the history page's kind menu lists them)", f.Kind)
	}
	if f.Tier != "" && !vocab.Tier(f.Tier).Valid() {
		return f, fmt.Errorf("tier must be auto, batched or explicit")
	}
	if f.RunID != "" {
		if _, err := uuid.Parse(f.RunID); err != nil {
			return f, fmt.Errorf("run must be a run id")
		}
	}
	var err error
	if f.Since, err = parseTime(get("since"), false); err != nil {
		return f, fmt.Errorf("since must be a date (2026-11-21) or a time (RFC 3339)")
	}
	if f.Until, err = parseTime(get("until"), true); err != nil {
		return f, fmt.Errorf("until must be a date (2026-11-21) or a time (RFC 3339)")
	}
	return f, nil
}

// parseTime reads a date or an RFC 3339 time; an end date includes its day.
func parseTime(s string, end bool) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return &t, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return nil, err
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return &t, nil
}
