package audit

import "time"

// Kinds of the durable waits (internal/workflow timer.go and event.go).
const (
	KindRunSleeping      Kind = "run.sleeping"
	KindRunEventWaiting  Kind = "run.event_waiting"
	KindRunWoke          Kind = "run.woke"
	KindRunEventReceived Kind = "run.event_received"
)

// RunSleeping: a run parked at a durable timer until WakeAt.
type RunSleeping struct {
	Step   string    `json:"step"`
	WakeAt time.Time `json:"wake_at"`
}

// RunEventWaiting: a run parked until the event Event arrives, or until
// TimeoutAt (none: for ever).
type RunEventWaiting struct {
	Event     string     `json:"event"`
	TimeoutAt *time.Time `json:"timeout_at,omitempty"`
}

// RunWoke: a parked step was resumed: Cause is "timer" (the sleep was due),
// "event" (its event arrived) or "timeout" (the event did not come in time).
type RunWoke struct {
	Step    string `json:"step"`
	Cause   string `json:"cause"`
	EventID int64  `json:"event_id,omitempty"`
}

// RunEventReceived: an event was delivered to a run; Resumed says whether
// it woke the run waiting for it (otherwise it is kept for the run's wait).
type RunEventReceived struct {
	Event          string `json:"event"`
	EventID        int64  `json:"event_id"`
	IdempotencyKey string `json:"idempotency_key"`
	Resumed        bool   `json:"resumed"`
}

// Kind implements Details.
func (RunSleeping) Kind() Kind { return KindRunSleeping }

// Kind implements Details.
func (RunEventWaiting) Kind() Kind { return KindRunEventWaiting }

// Kind implements Details.
func (RunWoke) Kind() Kind { return KindRunWoke }

// Kind implements Details.
func (RunEventReceived) Kind() Kind { return KindRunEventReceived }
