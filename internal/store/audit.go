package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// AuditEvent is one row of the audit log.
type AuditEvent struct {
	ID          int64           `json:"id"`
	Seq         int64           `json:"seq"` // 0 until chained
	At          time.Time       `json:"at"`
	Actor       string          `json:"actor"`
	Kind        string          `json:"kind"`
	SubjectType string          `json:"subject_type"`
	SubjectID   string          `json:"subject_id"`
	RunID       *string         `json:"run_id,omitempty"`
	Details     json.RawMessage `json:"details"`
	PrevHash    []byte          `json:"prev_hash,omitempty"`
	Hash        []byte          `json:"hash,omitempty"`
	// AtMicros and DetailsText are the exact values the hash covers.
	AtMicros    int64  `json:"-"`
	DetailsText string `json:"-"`
}

// AuditAppend records an event in the caller's transaction. It takes no lock:
// the chainer links committed events afterwards.
func AuditAppend(ctx context.Context, db DBTX, actor, kind, subjectType, subjectID string, runID *string, details any) (int64, error) {
	raw, err := json.Marshal(details)
	if err != nil {
		return 0, fmt.Errorf("encode audit details: %w", err)
	}
	if string(raw) == "null" {
		raw = []byte("{}")
	}
	var id int64
	if err := db.QueryRow(ctx, `INSERT INTO audit_events (actor, kind, subject_type, subject_id, run_id, details)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, actor, kind, subjectType, subjectID, runID, raw).Scan(&id); err != nil {
		return 0, fmt.Errorf("append audit event %s: %w", kind, interpret(err))
	}
	return id, nil
}

const auditColumns = `id, coalesce(seq, 0), at, actor, kind, subject_type, subject_id, run_id::text, details::text,
	(extract(epoch FROM at) * 1000000)::bigint, prev_hash, hash`

func scanAudit(row interface{ Scan(...any) error }, e *AuditEvent) error {
	if err := row.Scan(&e.ID, &e.Seq, &e.At, &e.Actor, &e.Kind, &e.SubjectType, &e.SubjectID, &e.RunID,
		&e.DetailsText, &e.AtMicros, &e.PrevHash, &e.Hash); err != nil {
		return err
	}
	e.Details = json.RawMessage(e.DetailsText)
	return nil
}

// AuditScan streams the chained events in chain order from fromSeq to fn,
// holding one row in memory. fn returning an error stops the scan with it.
func AuditScan(ctx context.Context, db DBTX, fromSeq int64, fn func(*AuditEvent) error) error {
	return streamAudit(ctx, db, fn, `SELECT `+auditColumns+` FROM audit_events WHERE seq >= $1 ORDER BY seq`, fromSeq)
}

// streamAudit runs an audit query and hands fn each row, reusing one event.
func streamAudit(ctx context.Context, db DBTX, fn func(*AuditEvent) error, sql string, args ...any) error {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("query audit: %w", interpret(err))
	}
	defer rows.Close()
	var e AuditEvent
	for rows.Next() {
		if err := scanAudit(rows, &e); err != nil {
			return fmt.Errorf("scan audit row: %w", interpret(err))
		}
		if err := fn(&e); err != nil {
			return err
		}
	}
	return interpret(rows.Err())
}

// AuditHead returns the last chained event's sequence number and hash, or 0
// and nil when nothing is chained.
func AuditHead(ctx context.Context, db DBTX) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := db.QueryRow(ctx, `SELECT seq, hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if err := interpret(err); err == ErrNotFound {
		return 0, nil, nil
	} else if err != nil {
		return 0, nil, fmt.Errorf("audit head: %w", err)
	}
	return seq, hash, nil
}

// AuditChainLock serializes chainers for the rest of the transaction.
func AuditChainLock(ctx context.Context, db DBTX) error {
	if _, err := db.Exec(ctx, `SELECT pg_advisory_xact_lock(7243100)`); err != nil {
		return fmt.Errorf("audit chain lock: %w", interpret(err))
	}
	return nil
}

// AuditUnchained returns up to limit committed, unchained events in insertion
// order, locked for the caller's transaction.
func AuditUnchained(ctx context.Context, db DBTX, limit int) ([]*AuditEvent, error) {
	rows, err := db.Query(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE seq IS NULL ORDER BY id LIMIT $1 FOR UPDATE`, limit)
	if err != nil {
		return nil, fmt.Errorf("unchained audit events: %w", interpret(err))
	}
	defer rows.Close()
	var out []*AuditEvent
	for rows.Next() {
		var e AuditEvent
		if err := scanAudit(rows, &e); err != nil {
			return nil, fmt.Errorf("scan audit row: %w", interpret(err))
		}
		out = append(out, &e)
	}
	return out, interpret(rows.Err())
}

// AuditSetChain stores the chain position and hashes of events, one statement
// for the whole batch.
func AuditSetChain(ctx context.Context, db DBTX, events []*AuditEvent) error {
	ids := make([]int64, len(events))
	seqs := make([]int64, len(events))
	prevs := make([][]byte, len(events))
	hashes := make([][]byte, len(events))
	for i, e := range events {
		ids[i], seqs[i], prevs[i], hashes[i] = e.ID, e.Seq, e.PrevHash, e.Hash
	}
	_, err := db.Exec(ctx, `UPDATE audit_events a SET seq = c.seq, prev_hash = c.prev, hash = c.hash
		FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS c(id, seq, prev, hash)
		WHERE a.id = c.id`, ids, seqs, prevs, hashes)
	if err != nil {
		return fmt.Errorf("chain audit events: %w", interpret(err))
	}
	return nil
}

// AuditUnchainedCount counts events not yet chained.
func AuditUnchainedCount(ctx context.Context, db DBTX) (int64, error) {
	var n int64
	if err := db.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE seq IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count unchained: %w", interpret(err))
	}
	return n, nil
}
