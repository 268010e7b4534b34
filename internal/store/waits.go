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
	"github.com/countersign/countersign/vocab"
)

// StepPark records a durable wait (a sleep, an event) as the run's waiting
// step, due at wakeAt (nil: an event awaited without a timeout).
func StepPark(ctx context.Context, db DBTX, s StepRecord, wakeAt *time.Time) error {
	err := queries.StepPark(ctx, db, dbsqlc.StepParkParams{RunID: s.RunID, Seq: s.Seq, Name: s.Name, Kind: string(s.Kind),
		Output: s.Output, Attempts: s.Attempts, StartedAt: s.StartedAt, WakeAt: wakeAt})
	if err != nil {
		return fmt.Errorf("park step %s: %w", s.Name, interpret(err))
	}
	return nil
}

// RunLockHeld locks a running run that owner still holds until tx ends.
// Returns ErrNotFound when the run is no longer running or owner lost it.
func RunLockHeld(ctx context.Context, db DBTX, id, owner string) error {
	if _, err := queries.RunLockHeld(ctx, db, dbsqlc.RunLockHeldParams{ID: id, Owner: &owner}); err != nil {
		return fmt.Errorf("lock run: %w", interpret(err))
	}
	return nil
}

// RunPark parks a running run that owner holds in status (sleeping,
// waiting_event) at step under a new resume sequence, which it returns.
// Returns ErrNotFound when the run was cancelled or handed on.
func RunPark(ctx context.Context, db DBTX, id, owner, step string, status vocab.RunStatus, from []string) (int, error) {
	seq, err := queries.RunPark(ctx, db, dbsqlc.RunParkParams{Status: string(status), CurrentStep: step, ID: id,
		FromStatuses: from, Owner: &owner})
	if err != nil {
		return 0, fmt.Errorf("park run: %w", interpret(err))
	}
	return seq, nil
}

// RunWake queues a parked run under a new resume sequence, which it returns,
// if it is still in one of from at resume sequence seq; ErrNotFound otherwise.
func RunWake(ctx context.Context, db DBTX, id string, seq int, from []string) (int, error) {
	next, err := queries.RunWake(ctx, db, dbsqlc.RunWakeParams{ID: id, ResumeSeq: seq, FromStatuses: from})
	if err != nil {
		return 0, fmt.Errorf("wake run: %w", interpret(err))
	}
	return next, nil
}

//go:embed sql/RunParkedOverdueLock.sql
var runParkedOverdueLockSQL string

// Parked is a run parked at a durable wait whose wake job was lost.
type Parked struct {
	ID        string          `db:"id"`
	Status    vocab.RunStatus `db:"status"`
	ResumeSeq int             `db:"resume_seq"`
	Step      string          `db:"step"`
}

// RunParkedOverdueLock finds up to limit parked runs due more than grace ago
// that no job will wake, and locks them until tx ends, skipping rows another
// sweeper holds.
func RunParkedOverdueLock(ctx context.Context, db DBTX, grace time.Duration, limit int) ([]Parked, error) {
	// live_job's running-job window: a wake job fetched within grace counts.
	rows, err := db.Query(ctx, withLiveJob(runParkedOverdueLockSQL), pgx.NamedArgs{"grace_micros": grace.Microseconds(),
		"lease_micros": grace.Microseconds(), "row_limit": limit})
	if err != nil {
		return nil, fmt.Errorf("find overdue parked runs: %w", interpret(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[Parked])
	if err != nil {
		return nil, fmt.Errorf("find overdue parked runs: %w", interpret(err))
	}
	return out, nil
}

// Event is an event delivered to a run, kept until a wait of its name
// consumes it.
type Event struct {
	ID             int64           `json:"id"`
	RunID          string          `json:"run_id"`
	Name           string          `json:"name"`
	IdempotencyKey string          `json:"idempotency_key"`
	Payload        json.RawMessage `json:"payload"`
	SentBy         string          `json:"sent_by"`
	ReceivedAt     time.Time       `json:"received_at"`
	ConsumedSeq    *int            `json:"consumed_seq,omitempty"`
	ConsumedAt     *time.Time      `json:"consumed_at,omitempty"`
}

func eventOf(e *dbsqlc.RunEvent) *Event {
	return &Event{ID: e.ID, RunID: e.RunID, Name: e.Name, IdempotencyKey: e.IdempotencyKey, Payload: e.Payload,
		SentBy: e.SentBy, ReceivedAt: e.ReceivedAt, ConsumedSeq: e.ConsumedSeq, ConsumedAt: e.ConsumedAt}
}

// EventInsert stores an event. created is false, and the stored event is
// returned, when one with the same run, name and key exists.
func EventInsert(ctx context.Context, db DBTX, e Event) (ev *Event, created bool, err error) {
	row, err := queries.RunEventInsert(ctx, db, dbsqlc.RunEventInsertParams{RunID: e.RunID, Name: e.Name,
		IdempotencyKey: e.IdempotencyKey, Payload: e.Payload, SentBy: e.SentBy})
	if err == nil {
		return eventOf(row), true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, false, fmt.Errorf("store event: %w", interpret(err))
	}
	ev, err = EventGetByKey(ctx, db, e.RunID, e.Name, e.IdempotencyKey)
	return ev, false, err
}

// EventGetByKey returns the event delivered to a run under name and key.
func EventGetByKey(ctx context.Context, db DBTX, runID, name, key string) (*Event, error) {
	row, err := queries.RunEventGetByKey(ctx, db, dbsqlc.RunEventGetByKeyParams{RunID: runID, Name: name, IdempotencyKey: key})
	if err != nil {
		return nil, fmt.Errorf("get event: %w", interpret(err))
	}
	return eventOf(row), nil
}

// EventNextLock returns, locked, the oldest event of name delivered to a run
// and not yet consumed; ErrNotFound when there is none.
func EventNextLock(ctx context.Context, db DBTX, runID, name string) (*Event, error) {
	row, err := queries.RunEventNextLock(ctx, db, dbsqlc.RunEventNextLockParams{RunID: runID, Name: name})
	if err != nil {
		return nil, fmt.Errorf("next event: %w", interpret(err))
	}
	return eventOf(row), nil
}

// EventConsume marks an event consumed by the run's step seq; ErrNotFound
// when another wait consumed it.
func EventConsume(ctx context.Context, db DBTX, id int64, seq int) error {
	if err := oneRow(queries.RunEventConsume(ctx, db, dbsqlc.RunEventConsumeParams{ID: id, ConsumedSeq: seq})); err != nil {
		return fmt.Errorf("consume event: %w", err)
	}
	return nil
}

// EventList returns the events delivered to a run, oldest first.
func EventList(ctx context.Context, db DBTX, runID string) ([]*Event, error) {
	rows, err := queries.RunEventList(ctx, db, runID)
	if err != nil {
		return nil, fmt.Errorf("list events: %w", interpret(err))
	}
	return convertAll(rows, eventOf), nil
}
