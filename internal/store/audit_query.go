package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditFilter selects audit events. Verdict, workflow, rule and tier are read
// from the event's details, where decisions and requests record them.
type AuditFilter struct {
	Actor    string
	Kind     string
	Verdict  string
	Workflow string
	Rule     string
	Tier     string
	RunID    string
	Since    *time.Time
	Until    *time.Time
	// Redact hides who tried to sign in, from where and why it failed
	// (RedactedKinds) from whoever is not an admin: the email typed may
	// be a password typed in the wrong field. It also leaves out every
	// event's hash and prev_hash (see redact).
	Redact bool
	// HideKinds are kinds left out (the history page hides sign-ins
	// unless asked for them).
	HideKinds []string
}

// RedactedKinds are the events whose actor, subject and details Redact hides.
var RedactedKinds = []string{"auth.login_failed", "auth.login_throttled"}

// redactedDetails replaces the details of a redacted event.
const redactedDetails = `{"redacted": "visible to admins only"}`

// redact hides what a redacted event names, and every event's hashes: a
// hash covers the event's actor, subject and details, and the chain carries
// it into every later hash, so the redacted event's own hash, the next
// event's prev_hash or any later hash with the contents in between would let
// a reader test guesses of what was typed offline. Only an admin's export
// verifies, and it shows every field.
func redact(e *AuditEvent) {
	e.PrevHash, e.Hash = nil, nil
	if !slices.Contains(RedactedKinds, e.Kind) {
		return
	}
	e.Actor, e.SubjectID = "(redacted)", "(redacted)"
	e.Details, e.DetailsText = json.RawMessage(redactedDetails), redactedDetails
}

var (
	//go:embed sql/audit_filter.sql
	auditFilterSQL string
	//go:embed sql/AuditList.sql
	auditListSQL string
	//go:embed sql/AuditSummarize.sql
	auditSummarizeSQL string
)

// withFilter puts the filter's conditions (sql/audit_filter.sql) where a
// query says /* filter */: one definition serves the listing and the summary.
func withFilter(query string) string {
	return strings.Replace(query, "/* filter */", "("+auditFilterSQL+")", 1)
}

// args are the filter's named arguments.
func (f AuditFilter) args() pgx.NamedArgs {
	a := pgx.NamedArgs{"actor": f.Actor, "redact_actor": f.Redact && f.Actor != "", "redacted_kinds": RedactedKinds,
		"kind": f.Kind, "verdict": f.Verdict, "workflow": f.Workflow, "rule": f.Rule, "tier": f.Tier,
		"run_id": nil, "since": f.Since, "until": f.Until, "hidden_kinds": f.HideKinds}
	if f.HideKinds == nil {
		a["hidden_kinds"] = []string{}
	}
	if f.RunID != "" {
		a["run_id"] = f.RunID
	}
	return a
}

// AuditList returns one keyset page of events, newest first: pass the last
// row's ID as beforeID for the next page (0 for the first).
func AuditList(ctx context.Context, db DBTX, f AuditFilter, beforeID int64, limit int) ([]*AuditEvent, error) {
	var out []*AuditEvent
	err := AuditStream(ctx, db, f, beforeID, limit, func(e *AuditEvent) error {
		c := *e
		out = append(out, &c)
		return nil
	})
	return out, err
}

// AuditStream streams the events the filter selects, newest first, holding
// one row in memory: exports of any size run in constant memory. limit 0
// means all.
func AuditStream(ctx context.Context, db DBTX, f AuditFilter, beforeID int64, limit int, fn func(*AuditEvent) error) error {
	args := f.args()
	args["before_id"], args["row_limit"] = beforeID, nil
	if limit > 0 {
		args["row_limit"] = limit
	}
	if f.Redact {
		inner := fn
		fn = func(e *AuditEvent) error {
			redact(e)
			return inner(e)
		}
	}
	return streamAudit(ctx, db, fn, withFilter(auditListSQL), args)
}

// AuditSummary describes the decisions among the filtered events.
type AuditSummary struct {
	Decisions             int            `json:"decisions"`
	ByVerdict             map[string]int `json:"by_verdict"`
	Automatic             int            `json:"automatic"`
	MedianSecondsToDecide float64        `json:"median_seconds_to_decision"`
}

// AutomaticShare is the share of decisions the policy made.
func (s AuditSummary) AutomaticShare() float64 {
	if s.Decisions == 0 {
		return 0
	}
	return float64(s.Automatic) / float64(s.Decisions)
}

// AuditSummarize counts the decisions in the filtered events: per verdict,
// how many the policy made, and the median time a human took.
func AuditSummarize(ctx context.Context, db DBTX, f AuditFilter) (*AuditSummary, error) {
	rows, err := db.Query(ctx, withFilter(auditSummarizeSQL), f.args())
	if err != nil {
		return nil, fmt.Errorf("summarize audit: %w", interpret(err))
	}
	type summaryRow struct {
		Verdict   *string `db:"verdict"`
		Decisions int     `db:"decisions"`
		Automatic int     `db:"automatic"`
		Median    float64 `db:"median"`
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[summaryRow])
	if err != nil {
		return nil, fmt.Errorf("summarize audit: %w", interpret(err))
	}
	s := &AuditSummary{ByVerdict: map[string]int{}}
	for _, r := range got {
		if r.Verdict == nil { // the rollup's total row
			s.Decisions, s.Automatic, s.MedianSecondsToDecide = r.Decisions, r.Automatic, r.Median
			continue
		}
		s.ByVerdict[*r.Verdict] = r.Decisions
	}
	return s, nil
}
