package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"
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

// where renders the filter as SQL conditions with their arguments.
func (f AuditFilter) where() *where {
	var w where
	w.eq("actor", f.Actor)
	if f.Redact && f.Actor != "" {
		// Otherwise a search by actor would tell which emails were typed.
		w.add("kind <> ALL(" + w.arg(RedactedKinds) + ")")
	}
	w.eq("kind", f.Kind)
	w.eq("details->>'verdict'", f.Verdict)
	w.eq("details->>'workflow'", f.Workflow)
	w.eq("details->>'rule'", f.Rule)
	w.eq("details->>'tier'", f.Tier)
	if f.RunID != "" {
		w.add("run_id = " + w.arg(f.RunID) + "::uuid")
	}
	if f.Since != nil {
		w.add("at >= " + w.arg(*f.Since))
	}
	if f.Until != nil {
		w.add("at < " + w.arg(*f.Until))
	}
	return &w
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
	w := f.where()
	if beforeID > 0 {
		w.add("id < " + w.arg(beforeID))
	}
	q := `SELECT ` + auditColumns + ` FROM audit_events WHERE ` + w.sql() + ` ORDER BY id DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	if f.Redact {
		inner := fn
		fn = func(e *AuditEvent) error {
			redact(e)
			return inner(e)
		}
	}
	return streamAudit(ctx, db, fn, q, w.args...)
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
	w := f.where()
	rows, err := db.Query(ctx, `SELECT details->>'verdict', count(*), count(*) FILTER (WHERE kind = 'decision.auto'),
			coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY (details->>'seconds_to_decision')::float8)
				FILTER (WHERE kind = 'decision.recorded'), 0)
		FROM audit_events WHERE kind IN ('decision.recorded', 'decision.auto') AND `+w.sql()+`
		GROUP BY ROLLUP (details->>'verdict')`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("summarize audit: %w", interpret(err))
	}
	defer rows.Close()
	s := &AuditSummary{ByVerdict: map[string]int{}}
	for rows.Next() {
		var verdict *string
		var n, auto int
		var median float64
		if err := rows.Scan(&verdict, &n, &auto, &median); err != nil {
			return nil, fmt.Errorf("scan summary: %w", interpret(err))
		}
		if verdict == nil { // the rollup's total row
			s.Decisions, s.Automatic, s.MedianSecondsToDecide = n, auto, median
			continue
		}
		s.ByVerdict[*verdict] = n
	}
	return s, interpret(rows.Err())
}
