package store

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store/dbsqlc"
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
	id, err := queries.AuditAppend(ctx, db, dbsqlc.AuditAppendParams{Actor: actor, Kind: kind, SubjectType: subjectType,
		SubjectID: subjectID, RunID: runID, Details: raw})
	if err != nil {
		return 0, fmt.Errorf("append audit event %s: %w", kind, interpret(err))
	}
	return id, nil
}

// auditFromInternal converts a generated row to the exported AuditEvent,
// whose Details are the exact text the hash covers.
func auditFromInternal(r *dbsqlc.AuditUnchainedRow) AuditEvent {
	return AuditEvent{ID: r.ID, At: r.At, Actor: r.Actor, Kind: r.Kind, SubjectType: r.SubjectType,
		SubjectID: r.SubjectID, RunID: r.RunID, Details: json.RawMessage(r.DetailsText),
		AtMicros: r.AtMicros, DetailsText: r.DetailsText}
}

//go:embed sql/AuditChained.sql
var auditChainedSQL string

// AuditScan streams the chained events in chain order from fromSeq to fn,
// holding one row in memory. fn returning an error stops the scan with it.
func AuditScan(ctx context.Context, db DBTX, fromSeq int64, fn func(*AuditEvent) error) error {
	return streamAudit(ctx, db, fn, auditChainedSQL, pgx.NamedArgs{"from_seq": fromSeq})
}

// streamAudit runs an audit query and hands fn each row, reusing one event.
func streamAudit(ctx context.Context, db DBTX, fn func(*AuditEvent) error, sql string, args pgx.NamedArgs) error {
	rows, err := db.Query(ctx, sql, args)
	if err != nil {
		return fmt.Errorf("query audit: %w", interpret(err))
	}
	defer rows.Close()
	// Scanned by position, not by name: this loop verifies the whole chain,
	// and matching names for each of a million rows doubled its time
	// (BENCHMARKS.md). Both queries that come here (sql/AuditChained.sql,
	// sql/AuditList.sql) select these columns in this order.
	var e AuditEvent
	for rows.Next() {
		if err := rows.Scan(&e.ID, &e.Seq, &e.At, &e.Actor, &e.Kind, &e.SubjectType, &e.SubjectID, &e.RunID,
			&e.DetailsText, &e.AtMicros, &e.PrevHash, &e.Hash); err != nil {
			return fmt.Errorf("scan audit row: %w", interpret(err))
		}
		e.Details = json.RawMessage(e.DetailsText)
		if err := fn(&e); err != nil {
			return err
		}
	}
	return interpret(rows.Err())
}

// AuditHead returns the last chained event's sequence number and hash, or 0
// and nil when nothing is chained.
func AuditHead(ctx context.Context, db DBTX) (int64, []byte, error) {
	head, err := queries.AuditHead(ctx, db)
	if err := interpret(err); errors.Is(err, ErrNotFound) {
		return 0, nil, nil
	} else if err != nil {
		return 0, nil, fmt.Errorf("audit head: %w", err)
	}
	return head.Seq, head.Hash, nil
}

// AuditChainLock serializes chainers for the rest of the transaction.
func AuditChainLock(ctx context.Context, db DBTX) error {
	if err := queries.AuditChainLock(ctx, db); err != nil {
		return fmt.Errorf("audit chain lock: %w", interpret(err))
	}
	return nil
}

// AuditChainTryLock takes the chainers' lock for the rest of the
// transaction if no one holds it, and reports whether it did.
func AuditChainTryLock(ctx context.Context, db DBTX) (bool, error) {
	locked, err := queries.AuditChainTryLock(ctx, db)
	if err != nil {
		return false, fmt.Errorf("audit chain lock: %w", interpret(err))
	}
	return locked, nil
}

// AuditUnchained returns up to limit committed, unchained events in
// insertion order and, read with them in one statement, the chain's head
// as AuditHead returns it (0 and nil when nothing is chained; also 0 and
// nil when there are no events to chain, whatever the head).
func AuditUnchained(ctx context.Context, db DBTX, limit int) (headSeq int64, headHash []byte, events []*AuditEvent, err error) {
	rows, err := queries.AuditUnchained(ctx, db, int32(limit))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("unchained audit events: %w", interpret(err))
	}
	if len(rows) > 0 && len(rows[0].HeadHash) > 0 {
		headSeq, headHash = rows[0].HeadSeq, rows[0].HeadHash
	}
	return headSeq, headHash, convertAll(rows, func(r *dbsqlc.AuditUnchainedRow) *AuditEvent {
		e := auditFromInternal(r)
		return &e
	}), nil
}

// AuditSetChain stores the chain position and hashes of events, one statement
// for the whole batch.
func AuditSetChain(ctx context.Context, db DBTX, events []*AuditEvent) error {
	p := dbsqlc.AuditSetChainParams{Ids: make([]int64, len(events)), Seqs: make([]int64, len(events)),
		PrevHashes: make([][]byte, len(events)), Hashes: make([][]byte, len(events))}
	for i, e := range events {
		p.Ids[i], p.Seqs[i], p.PrevHashes[i], p.Hashes[i] = e.ID, e.Seq, e.PrevHash, e.Hash
	}
	if err := queries.AuditSetChain(ctx, db, p); err != nil {
		return fmt.Errorf("chain audit events: %w", interpret(err))
	}
	return nil
}

// AuditUnchainedCount counts events not yet chained.
func AuditUnchainedCount(ctx context.Context, db DBTX) (int64, error) {
	n, err := queries.AuditUnchainedCount(ctx, db)
	if err != nil {
		return 0, fmt.Errorf("count unchained: %w", interpret(err))
	}
	return n, nil
}

// AuditOffChainCount counts the events on neither the chain nor its queue,
// which no verification covers: 0 unless the log was tampered with.
func AuditOffChainCount(ctx context.Context, db DBTX) (int64, error) {
	n, err := queries.AuditOffChainCount(ctx, db)
	if err != nil {
		return 0, fmt.Errorf("count events off the chain: %w", interpret(err))
	}
	return n, nil
}
