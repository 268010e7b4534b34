// Package notice tells people what needs them: an outbox of events written
// in the transaction of their cause (Outbox.Emit), fanned out by a River job
// into one delivery per (event, recipient, channel), coalesced per recipient
// and channel into at most one message a window (a digest when several
// wait), and sent through a Channel with retries, each attempt recorded.
// Channels plug in by name (email is internal/notice/email).
//
// It is not internal/notify, which signals open pages through LISTEN/NOTIFY.
package notice

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Kind is what an event is about.
type Kind string

// The event kinds. Their strings are stored and shown in preferences.
const (
	RequestWaiting   Kind = "request.waiting"
	BatchReady       Kind = "batch.ready"
	DeadlineHalf     Kind = "deadline.half" // half the time to the deadline has gone
	DeadlineNear     Kind = "deadline.near" // 90% of it has gone
	DeadlinePassed   Kind = "deadline.passed"
	Escalated        Kind = "request.escalated"
	RunFailed        Kind = "run.failed"
	DecisionRecorded Kind = "decision.recorded"
)

// Kinds lists every kind, in the order the settings page shows them.
func Kinds() []Kind {
	return []Kind{RequestWaiting, BatchReady, DeadlineHalf, DeadlineNear, DeadlinePassed, Escalated, RunFailed, DecisionRecorded}
}

// Label is the kind in words.
func (k Kind) Label() string {
	switch k {
	case RequestWaiting:
		return "A request waits for you"
	case BatchReady:
		return "A batch is ready for review"
	case DeadlineHalf:
		return "Half the time to a deadline has gone"
	case DeadlineNear:
		return "A deadline is near (90% of the time gone)"
	case DeadlinePassed:
		return "A deadline passed"
	case Escalated:
		return "A request was escalated to you"
	case RunFailed:
		return "A run failed"
	case DecisionRecorded:
		return "A decision was recorded (subscription)"
	}
	return string(k)
}

// Urgent reports whether quiet hours let the kind through: a near or passed
// deadline and an escalation cannot wait for the morning.
func (k Kind) Urgent() bool {
	return k == DeadlineNear || k == DeadlinePassed || k == Escalated
}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, x := range Kinds() {
		if x == k {
			return true
		}
	}
	return false
}

// DefaultEvents are the kinds a user with no preferences (and whose role has
// no defaults) receives: everything but the decision subscription.
func DefaultEvents() []Kind {
	return []Kind{RequestWaiting, BatchReady, DeadlineHalf, DeadlineNear, DeadlinePassed, Escalated, RunFailed}
}

// Event is something that happened that people should hear about. It names
// its subject and whom it reaches: users of Roles, the users UserIDs, and,
// with Subscribers, everyone whose preferences subscribe to its Kind.
type Event struct {
	Kind        Kind
	RequestID   string
	RunID       string
	BatchID     string
	Roles       []vocab.Role
	UserIDs     []int64
	Subscribers bool
	// Detail is a short line of context (a run's error, who decided).
	Detail string
}

// Scheduler puts notice jobs on the queue inside the caller's transaction.
// jobs.Scheduler implements it with River.
type Scheduler interface {
	// ScheduleFanout inserts the job that turns an event into deliveries.
	ScheduleFanout(ctx context.Context, tx pgx.Tx, eventID int64) error
	// ScheduleFlush inserts the job that sends what waits on a user's channel at at.
	ScheduleFlush(ctx context.Context, tx pgx.Tx, userID int64, channel string, at time.Time) error
	// ScheduleSend inserts the job that sends one message.
	ScheduleSend(ctx context.Context, tx pgx.Tx, messageID int64) error
	// ScheduleReminder inserts the job that emits kind for a still pending request at at.
	ScheduleReminder(ctx context.Context, tx pgx.Tx, requestID string, kind Kind, at time.Time) error
	// ScheduleChatUpdate inserts the job that updates the chat copies of a decided request.
	ScheduleChatUpdate(ctx context.Context, tx pgx.Tx, requestID string) error
}

// Outbox writes events in their cause's transaction. A nil *Outbox emits
// nothing, so that an engine built without notifications (most tests) runs.
type Outbox struct {
	scheduler Scheduler
}

// NewOutbox returns an Outbox scheduling through s.
func NewOutbox(s Scheduler) *Outbox { return &Outbox{scheduler: s} }

// Emit writes e to the outbox with its fan-out job, in tx: if tx rolls back,
// nobody hears of it.
func (o *Outbox) Emit(ctx context.Context, tx pgx.Tx, e Event) error {
	if o == nil {
		return nil
	}
	row := &store.NoticeEvent{Kind: string(e.Kind), RequestID: ref(e.RequestID), RunID: ref(e.RunID), BatchID: ref(e.BatchID),
		Roles: e.Roles, UserIDs: e.UserIDs, Subscribers: e.Subscribers, Urgent: e.Kind.Urgent(), Detail: clip(e.Detail, 500)}
	saved, err := store.NoticeEventInsert(ctx, tx, row)
	if err != nil {
		return fmt.Errorf("emit %s: %w", e.Kind, err)
	}
	if err := o.scheduler.ScheduleFanout(ctx, tx, saved.ID); err != nil {
		return fmt.Errorf("schedule fan-out of %s: %w", e.Kind, err)
	}
	return nil
}

// EmitToSubscribers is Emit for an event that reaches subscribers only
// (e.Subscribers set, no roles or users): when nobody subscribes to its kind
// it writes nothing, so that every decision does not pay for an event and a
// job that would reach no one.
func (o *Outbox) EmitToSubscribers(ctx context.Context, tx pgx.Tx, e Event) error {
	if o == nil {
		return nil
	}
	ok, err := store.NoticeSubscribed(ctx, tx, string(e.Kind))
	if err != nil || !ok {
		return err
	}
	e.Subscribers = true
	return o.Emit(ctx, tx, e)
}

// Remind schedules, in tx, the deadline reminders of a request opened at
// opened with deadline: at 50% and at 90% of the time between them. The
// reminder jobs check at fire time that the request still waits.
func (o *Outbox) Remind(ctx context.Context, tx pgx.Tx, requestID string, opened, deadline time.Time) error {
	if o == nil || !deadline.After(opened) {
		return nil
	}
	span := deadline.Sub(opened)
	for _, r := range []struct {
		kind Kind
		frac float64
	}{{DeadlineHalf, 0.5}, {DeadlineNear, 0.9}} {
		at := opened.Add(time.Duration(float64(span) * r.frac))
		if err := o.scheduler.ScheduleReminder(ctx, tx, requestID, r.kind, at); err != nil {
			return fmt.Errorf("schedule %s reminder: %w", r.kind, err)
		}
	}
	return nil
}

func ref(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// clip cuts s to at most n bytes at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
