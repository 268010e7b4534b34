package workflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// ErrEventTimeout is what WaitEvent returns (wrapped in a Failure with code
// event_timeout, so that a run that does not handle it fails at once) when
// its event did not arrive in time. Test for it with errors.Is.
var ErrEventTimeout = errors.New("event did not arrive in time")

// CodeEventTimeout is the failure code of a run that returned WaitEvent's
// timeout unhandled.
const CodeEventTimeout = "event_timeout"

// Event delivery limits: a payload is bounded like a step's result, since it
// becomes one; names and keys like business keys.
const (
	MaxEventPayload = 64 << 10
	MaxEventName    = 100
	MaxEventKey     = 200
)

// eventRecord is an event step's recorded output.
type eventRecord struct {
	EventID  int64           `json:"event_id,omitempty"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	TimedOut bool            `json:"timed_out,omitempty"`
	// While the step waits: what it waits for and until when.
	Awaiting  string     `json:"awaiting,omitempty"`
	TimeoutAt *time.Time `json:"timeout_at,omitempty"`
}

// WaitEvent suspends the run until an event called name is delivered to it
// (Engine.Signal: the API's POST /api/v1/runs/{id}/events/{name}, `countersign
// run signal`), and returns its JSON payload decoded into T. An event
// delivered before the run gets here was kept and is returned at once; each
// WaitEvent of a name consumes one event of that name, oldest first. While
// it waits the run holds no worker and no running job, and the function
// unwinds with ErrSuspended (return it as it is). After timeout (0: never)
// it returns an error matching ErrEventTimeout. A replay returns what the
// first pass returned.
func WaitEvent[T any](ctx context.Context, name string, timeout time.Duration) (T, error) {
	var zero T
	x, err := executionFrom(ctx)
	if err != nil {
		return zero, err
	}
	if err := checkEventName(name); err != nil {
		return zero, Permanent(err)
	}
	s, err := x.next(name, vocab.StepKindEvent)
	if err != nil {
		return zero, err
	}
	if x.sandbox != nil && !s.replayed() {
		// A scripted run has no events to receive; a strict replay stopped
		// at this step already (next).
		return zero, Permanent(fmt.Errorf("event %q: WaitEvent needs a recorded event in a scripted run", name))
	}
	var rec eventRecord
	switch {
	case s.replayed():
		if err := json.Unmarshal(s.prior.Output, &rec); err != nil {
			return zero, Permanent(fmt.Errorf("event %q: recorded result does not decode: %w", name, err))
		}
	default:
		var deadline *time.Time
		cause := ""
		if s.prior != nil && s.prior.Status == vocab.StepWaiting {
			deadline, cause = s.prior.WakeAt, "event" // resumed: keep the first deadline
		} else if timeout > 0 {
			d := x.engine.now().Add(timeout).UTC()
			deadline = &d
		}
		sctx, span := x.traceStep(ctx, s) // trace.go
		rec, err = x.awaitEvent(sctx, s, deadline, cause)
		traceStepped(span, err)
		if err != nil {
			return zero, err
		}
	}
	if rec.TimedOut {
		return zero, &Failure{Code: CodeEventTimeout, Message: fmt.Sprintf("event %q did not arrive in time", name), Err: ErrEventTimeout}
	}
	var out T
	if err := json.Unmarshal(rec.Payload, &out); err != nil {
		return zero, Permanent(fmt.Errorf("event %q: payload does not decode into %T: %w", name, out, err))
	}
	return out, nil
}

// awaitEvent consumes the oldest unconsumed event of the step's name and
// records it as the step's result, or records a timeout once deadline has
// passed, or parks the run until one of them, all under the run's lock,
// which a delivery takes too: an event is either seen here or delivered to
// a run already parked, which it then wakes.
func (x *execution) awaitEvent(ctx context.Context, s *slot, deadline *time.Time, cause string) (eventRecord, error) {
	var rec eventRecord
	parked := false
	err := x.withTx(ctx, func(ctx context.Context, tx pgx.Tx) error {
		rec, parked = eventRecord{}, false
		if err := store.RunLockHeld(ctx, tx, x.run.ID, x.owner); errors.Is(err, store.ErrNotFound) {
			return ErrCancelled
		} else if err != nil {
			return err
		}
		ev, err := store.EventNextLock(ctx, tx, x.run.ID, s.name)
		switch {
		case err == nil:
			if err := store.EventConsume(ctx, tx, ev.ID, s.seq); err != nil {
				return err
			}
			rec = eventRecord{EventID: ev.ID, Payload: ev.Payload}
			return x.recordWake(ctx, tx, s, rec, cause, ev.ID)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if deadline != nil && !x.engine.now().Before(*deadline) {
			rec = eventRecord{TimedOut: true}
			if cause != "" {
				cause = "timeout"
			}
			return x.recordWake(ctx, tx, s, rec, cause, 0)
		}
		out, _ := json.Marshal(eventRecord{Awaiting: s.name, TimeoutAt: deadline})
		parked = true
		return x.parkWaitTx(ctx, tx, s, vocab.RunWaitingEvent, out, deadline,
			audit.RunEventWaiting{Event: s.name, TimeoutAt: deadline})
	})
	if err != nil {
		return rec, err
	}
	if parked {
		x.suspended = true
		return rec, ErrSuspended
	}
	return rec, nil
}

// recordWake records a durable wait's result in tx, auditing the wake-up of
// a run that had been parked at it (cause set).
func (x *execution) recordWake(ctx context.Context, tx pgx.Tx, s *slot, out any, cause string, eventID int64) error {
	if err := x.record(ctx, s, out, 0, 0, tx); err != nil {
		return err
	}
	if cause == "" {
		return nil
	}
	_, err := audit.Append(ctx, tx, audit.Event{Actor: "system", Subject: audit.RunSubject(x.run.ID), RunID: x.run.ID,
		Details: audit.RunWoke{Step: s.name, Cause: cause, EventID: eventID}})
	return err
}

func checkEventName(name string) error {
	if name == "" || len(name) > MaxEventName || strings.ContainsAny(name, "/\x00") || strings.TrimSpace(name) != name {
		return fmt.Errorf("%w: an event name must be 1 to %d characters, without slashes or surrounding spaces", ErrInvalidInput, MaxEventName)
	}
	return nil
}

// SignalParams is an event to deliver to a run.
type SignalParams struct {
	RunID string
	Name  string
	// Key makes a repeated delivery a no-op: the same run, name and key
	// return the event stored the first time. Empty: a new key, so the
	// delivery is never taken for a repeat.
	Key     string
	Payload json.RawMessage
	Actor   string
}

// Signal delivers an event to a run: it is stored, and when the run is
// waiting for an event of that name, the run is resumed in the same
// transaction; otherwise it is kept until the run's WaitEvent of that name
// consumes it. A repeat of an earlier delivery (same run, name and key)
// changes nothing and returns the stored event with created=false, even once
// the run has ended. Returns ErrInvalidInput (nothing written) for a bad name,
// key or payload, ErrNotFound for an unknown run and ErrFinal for a run that
// has ended.
func (e *Engine) Signal(ctx context.Context, p SignalParams) (ev *store.Event, created bool, err error) {
	if err := checkEventName(p.Name); err != nil {
		return nil, false, err
	}
	if p.Key == "" {
		p.Key = uuid.NewString()
	}
	if len(p.Key) > MaxEventKey || strings.ContainsRune(p.Key, 0) {
		return nil, false, fmt.Errorf("%w: an idempotency key must be 1 to %d characters", ErrInvalidInput, MaxEventKey)
	}
	if len(bytes.TrimSpace(p.Payload)) == 0 {
		p.Payload = json.RawMessage("null")
	}
	if len(p.Payload) > MaxEventPayload {
		return nil, false, fmt.Errorf("%w: the payload is %d bytes, over the limit of %d", ErrInvalidInput, len(p.Payload), MaxEventPayload)
	}
	if !json.Valid(p.Payload) {
		return nil, false, fmt.Errorf("%w: the payload is not JSON", ErrInvalidInput)
	}
	if bytes.Contains(p.Payload, []byte(`\u0000`)) {
		return nil, false, fmt.Errorf("%w: NUL characters cannot be stored", ErrInvalidInput)
	}
	if _, err := uuid.Parse(p.RunID); err != nil {
		return nil, false, ErrNotFound
	}
	if p.Actor == "" {
		p.Actor = "system"
	}
	type result struct {
		ev      *store.Event
		created bool
	}
	res, err := store.WithTxV(ctx, e.pool, func(ctx context.Context, tx pgx.Tx) (result, error) {
		// The run's lock orders this delivery with the run's own wait
		// (awaitEvent): either that sees the event, or it parked first and
		// this wakes it.
		run, err := store.RunGetForUpdate(ctx, tx, p.RunID)
		if errors.Is(err, store.ErrNotFound) {
			return result{}, ErrNotFound
		} else if err != nil {
			return result{}, err
		}
		if prior, err := store.EventGetByKey(ctx, tx, p.RunID, p.Name, p.Key); err == nil {
			return result{prior, false}, nil
		} else if !errors.Is(err, store.ErrNotFound) {
			return result{}, err
		}
		if run.Status.Final() {
			return result{}, fmt.Errorf("%w (%s): it takes no more events", ErrFinal, run.Status)
		}
		ev, created, err := store.EventInsert(ctx, tx, store.Event{RunID: p.RunID, Name: p.Name, IdempotencyKey: p.Key,
			Payload: p.Payload, SentBy: p.Actor})
		if errors.Is(err, store.ErrInvalidInput) {
			return result{}, fmt.Errorf("%w: the payload cannot be stored", ErrInvalidInput)
		} else if err != nil || !created {
			return result{ev, false}, err
		}
		resumed := false
		if run.Status == vocab.RunWaitingEvent && run.CurrentStep == p.Name {
			seq, err := store.RunWake(ctx, tx, run.ID, run.ResumeSeq, sourcesOf(vocab.RunQueued))
			if err != nil {
				return result{}, err
			}
			if err := e.scheduler.EnqueueRun(ctx, tx, run.ID, seq); err != nil {
				return result{}, err
			}
			resumed = true
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: p.Actor, Subject: audit.RunSubject(run.ID), RunID: run.ID,
			Details: audit.RunEventReceived{Event: p.Name, EventID: ev.ID, IdempotencyKey: p.Key, Resumed: resumed}}); err != nil {
			return result{}, err
		}
		if resumed {
			if err := notifyRun(ctx, tx, run.ID, vocab.RunQueued); err != nil {
				return result{}, err
			}
		}
		return result{ev, true}, nil
	})
	if err != nil {
		return nil, false, err
	}
	return res.ev, res.created, nil
}
