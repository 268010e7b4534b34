package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// AuditEvent is one row of the hash-chained audit log.
type AuditEvent struct {
	Seq         int64           `json:"seq"`
	At          time.Time       `json:"at"`
	Actor       string          `json:"actor"`
	Kind        string          `json:"kind"`
	SubjectType string          `json:"subject_type"`
	SubjectID   string          `json:"subject_id"`
	RunID       *string         `json:"run_id,omitempty"`
	Details     json.RawMessage `json:"details"`
	PrevHash    []byte          `json:"prev_hash"`
	Hash        []byte          `json:"hash"`
	// AtMicros and DetailsText are the exact values the hash covers.
	AtMicros    int64  `json:"-"`
	DetailsText string `json:"-"`
}

// AuditAppend appends an event in the caller's transaction. The chain lock it
// takes is held until that transaction ends.
func AuditAppend(ctx context.Context, db DBTX, actor, kind, subjectType, subjectID string, runID *string, details any) (int64, error) {
	raw, err := json.Marshal(details)
	if err != nil {
		return 0, fmt.Errorf("encode audit details: %w", err)
	}
	if string(raw) == "null" {
		raw = []byte("{}")
	}
	var seq int64
	if err := db.QueryRow(ctx, `SELECT audit_append($1, $2, $3, $4, $5, $6)`,
		actor, kind, subjectType, subjectID, runID, raw).Scan(&seq); err != nil {
		return 0, fmt.Errorf("append audit event %s: %w", kind, err)
	}
	return seq, nil
}

// AuditScan streams every event in sequence order to fn, holding no more than
// one row in memory. fn returning an error stops the scan with that error.
func AuditScan(ctx context.Context, db DBTX, fromSeq int64, fn func(*AuditEvent) error) error {
	rows, err := db.Query(ctx, `
		SELECT seq, at, actor, kind, subject_type, subject_id, run_id::text, details::text,
			(extract(epoch FROM at) * 1000000)::bigint, prev_hash, hash
		FROM audit_events WHERE seq >= $1 ORDER BY seq`, fromSeq)
	if err != nil {
		return fmt.Errorf("scan audit: %w", err)
	}
	defer rows.Close()
	var e AuditEvent
	for rows.Next() {
		if err := rows.Scan(&e.Seq, &e.At, &e.Actor, &e.Kind, &e.SubjectType, &e.SubjectID, &e.RunID,
			&e.DetailsText, &e.AtMicros, &e.PrevHash, &e.Hash); err != nil {
			return fmt.Errorf("scan audit row: %w", err)
		}
		e.Details = json.RawMessage(e.DetailsText)
		if err := fn(&e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AuditHead returns the newest event's sequence number and hash, or 0 and nil
// for an empty log.
func AuditHead(ctx context.Context, db DBTX) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := db.QueryRow(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if err := interpret(err); err == ErrNotFound {
		return 0, nil, nil
	} else if err != nil {
		return 0, nil, fmt.Errorf("audit head: %w", err)
	}
	return seq, hash, nil
}
