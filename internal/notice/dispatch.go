package notice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Channel sends messages one way (email, slack). Send
// returns an error when the message was not accepted; it is then tried again.
type Channel interface {
	// Name is the channel's stored name ("email").
	Name() string
	// Send delivers m to its recipient.
	Send(ctx context.Context, m Message) error
}

// Hook sees every event once more as it is fanned out, inside the fan-out's
// transaction, for deliveries that go to no user: webhook subscriptions
// (internal/notice/webhook). What it writes commits with the fan-out, so it
// must be idempotent (a fan-out may run twice).
type Hook interface {
	Fanout(ctx context.Context, tx pgx.Tx, e *store.NoticeEvent) error
}

// Message is what a channel sends: one item, or a digest of several.
type Message struct {
	ID    int64
	To    Recipient
	Items []Item
}

// Digest reports whether the message folds several events together.
func (m Message) Digest() bool { return len(m.Items) > 1 }

// Recipient is the user a message goes to.
type Recipient struct {
	UserID int64
	Email  string
	Name   string
}

// Item is one event as a message shows it. Summary, Target, Rule and Detail
// may hold model or agent text: channels must escape them and make
// invisible characters visible.
type Item struct {
	Kind       Kind
	Title      string // the event in plain words
	ActionKind string
	Summary    string
	Target     string
	Risk       string
	Rule       string
	Deadline   *time.Time
	Detail     string
	Link       string // the console page to open (which asks to sign in)
	// RequestID and PayloadHash name the request an item is about and the
	// action it was shown with, for channels whose buttons decide it (Slack).
	RequestID   string
	PayloadHash string
	Pending     bool // the request still waited when the message was built
	At          time.Time
}

// Config wires a Dispatcher.
type Config struct {
	Pool      *pgxpool.Pool
	Scheduler Scheduler
	Channels  []Channel
	// Hooks see every event as it is fanned out (webhooks).
	Hooks []Hook
	// PublicURL is the console's address, for links (COUNTERSIGN_PUBLIC_URL).
	PublicURL string
	// Window is the coalescing window: at most one message per recipient and
	// channel in each (default one minute).
	Window time.Duration
	// MaxAttempts is how often a message is tried before it fails (default 8).
	MaxAttempts int
	Now         func() time.Time
	Logger      *slog.Logger
}

// Defaults.
const (
	DefaultWindow      = time.Minute
	DefaultMaxAttempts = 8
)

// Dispatcher fans events out, coalesces and sends them.
type Dispatcher struct {
	pool        *pgxpool.Pool
	scheduler   Scheduler
	channels    map[string]Channel
	names       []string
	hooks       []Hook
	publicURL   string
	window      time.Duration
	maxAttempts int
	now         func() time.Time
	logger      *slog.Logger
}

// NewDispatcher returns a Dispatcher.
func NewDispatcher(cfg Config) *Dispatcher {
	d := &Dispatcher{pool: cfg.Pool, scheduler: cfg.Scheduler, channels: map[string]Channel{}, hooks: cfg.Hooks,
		publicURL: strings.TrimSuffix(cfg.PublicURL, "/"), window: cfg.Window, maxAttempts: cfg.MaxAttempts, now: cfg.Now, logger: cfg.Logger}
	for _, c := range cfg.Channels {
		d.channels[c.Name()] = c
		d.names = append(d.names, c.Name())
	}
	if d.window <= 0 {
		d.window = DefaultWindow
	}
	if d.maxAttempts <= 0 {
		d.maxAttempts = DefaultMaxAttempts
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.logger == nil {
		d.logger = slog.Default()
	}
	return d
}

// Channels names the configured channels.
func (d *Dispatcher) Channels() []string { return slices.Clone(d.names) }

// MaxAttempts is how often a message is tried before it fails.
func (d *Dispatcher) MaxAttempts() int { return d.maxAttempts }

// Fanout turns event id into deliveries, in one transaction: one per
// recipient and channel their preferences allow (at most once: a second
// fan-out of the same event adds nothing), each waiting on its outlet, whose
// flush it schedules when none is due soon enough.
func (d *Dispatcher) Fanout(ctx context.Context, eventID int64) error {
	return store.WithTx(ctx, d.pool, func(ctx context.Context, tx pgx.Tx) error {
		e, err := store.NoticeEventGet(ctx, tx, eventID)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		for _, h := range d.hooks {
			if err := h.Fanout(ctx, tx, e); err != nil {
				return fmt.Errorf("fan out event %d: %w", e.ID, err)
			}
		}
		recipients, err := store.NoticeRecipients(ctx, tx, e)
		if err != nil {
			return err
		}
		now := d.now()
		for _, r := range recipients {
			prefs := Effective(r)
			if !slices.Contains(prefs.Events, e.Kind) {
				continue
			}
			notBefore := now
			if !e.Urgent {
				notBefore = prefs.QuietUntil(now)
			}
			for _, ch := range prefs.Channels {
				if _, ok := d.channels[ch]; !ok {
					continue
				}
				added, err := store.NoticeDeliveryInsert(ctx, tx, e.ID, r.UserID, ch, notBefore)
				if err != nil {
					return err
				}
				if added {
					if err := d.scheduleFlush(ctx, tx, r.UserID, ch, notBefore); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// scheduleFlush makes sure the outlet flushes no later than a delivery that
// may go at notBefore can: at once if the outlet sent nothing within the
// window, else at the window's end.
func (d *Dispatcher) scheduleFlush(ctx context.Context, tx pgx.Tx, userID int64, channel string, notBefore time.Time) error {
	o, err := store.NoticeOutletLock(ctx, tx, userID, channel)
	if err != nil {
		return err
	}
	at := notBefore
	if o.LastSentAt != nil {
		at = laterOf(at, o.LastSentAt.Add(d.window))
	}
	if o.FlushAt != nil && !o.FlushAt.After(at) {
		return nil // a flush is due soon enough and will take this delivery
	}
	if err := store.NoticeOutletSetFlush(ctx, tx, userID, channel, &at); err != nil {
		return err
	}
	return d.scheduler.ScheduleFlush(ctx, tx, userID, channel, at)
}

// Flush sends what waits on a user's channel: the deliveries due become one
// message (a digest when there are several) with its send job, in one
// transaction that also records the send time, so that the next flush
// waits a window. It returns how long to wait when it ran early (the
// window has not ended, or what waits is held by quiet hours).
func (d *Dispatcher) Flush(ctx context.Context, userID int64, channel string) (wait time.Duration, err error) {
	err = store.WithTx(ctx, d.pool, func(ctx context.Context, tx pgx.Tx) error {
		o, err := store.NoticeOutletLock(ctx, tx, userID, channel)
		if err != nil {
			return err
		}
		now := d.now()
		if o.LastSentAt != nil {
			if w := o.LastSentAt.Add(d.window).Sub(now); w > 0 {
				wait = w
				return nil
			}
		}
		due, err := store.NoticeDeliveriesDue(ctx, tx, userID, channel, now)
		if err != nil {
			return err
		}
		if len(due) == 0 {
			next, err := store.NoticeDeliveryNextWaiting(ctx, tx, userID, channel)
			if err != nil {
				return err
			}
			if next != nil {
				wait = next.Sub(now)
			}
			return store.NoticeOutletSetFlush(ctx, tx, userID, channel, next)
		}
		m, err := store.NoticeMessageCreate(ctx, tx, userID, channel, due)
		if err != nil {
			return err
		}
		if err := d.scheduler.ScheduleSend(ctx, tx, m.ID); err != nil {
			return err
		}
		next, err := store.NoticeDeliveryNextWaiting(ctx, tx, userID, channel)
		if err != nil {
			return err
		}
		if next != nil {
			at := laterOf(*next, now.Add(d.window))
			next = &at
			if err := d.scheduler.ScheduleFlush(ctx, tx, userID, channel, at); err != nil {
				return err
			}
		}
		return store.NoticeOutletSent(ctx, tx, userID, channel, now, next)
	})
	return wait, err
}

// ErrRetry wraps a failed attempt that will be tried again.
var ErrRetry = errors.New("message not accepted; will retry")

// Send sends message id through its channel and records the attempt. A
// message already sent or failed is left alone, so that a job run twice
// (a crash after the channel accepted it but before the record is the one
// gap) sends it at most once more. It returns an error wrapping ErrRetry
// when the attempt failed and attempts remain.
func (d *Dispatcher) Send(ctx context.Context, id int64) error {
	m, err := store.NoticeMessageGet(ctx, d.pool, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if m.Status != "pending" {
		return nil
	}
	ch, ok := d.channels[m.Channel]
	if !ok {
		_, err := store.NoticeMessageRecord(ctx, d.pool, id, "failed", "channel "+m.Channel+" is not configured in this process")
		return err
	}
	msg, err := d.build(ctx, m)
	if err != nil {
		return err
	}
	sendErr := ch.Send(ctx, msg)
	status, text := "sent", ""
	if sendErr != nil {
		status, text = "pending", sendErr.Error()
		if m.Attempts+1 >= d.maxAttempts {
			status = "failed"
		}
	}
	// The record must survive the job's context ending right after the send.
	if _, err := store.NoticeMessageRecord(context.WithoutCancel(ctx), d.pool, id, status, text); err != nil {
		return err
	}
	if status == "pending" {
		return fmt.Errorf("%w: %w", ErrRetry, sendErr)
	}
	if status == "failed" {
		d.logger.Warn("notification failed for good", "message", id, "channel", m.Channel, "err", sendErr)
	}
	return nil
}

// Redeliver sends a failed message again (the admin page's button).
// Returns store.ErrNotFound when no failed message has that id.
func (d *Dispatcher) Redeliver(ctx context.Context, id int64) error {
	return store.WithTx(ctx, d.pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := store.NoticeMessageRetry(ctx, tx, id); err != nil {
			return err
		}
		return d.scheduler.ScheduleSend(ctx, tx, id)
	})
}

// build reads what a message carries into Items.
func (d *Dispatcher) build(ctx context.Context, m *store.NoticeMessage) (Message, error) {
	u, err := store.UserGet(ctx, d.pool, m.UserID)
	if err != nil {
		return Message{}, fmt.Errorf("recipient of message %d: %w", m.ID, err)
	}
	events, err := store.NoticeMessageEvents(ctx, d.pool, m.ID)
	if err != nil {
		return Message{}, err
	}
	msg := Message{ID: m.ID, To: Recipient{UserID: u.ID, Email: u.Email, Name: u.Name}}
	for _, e := range events {
		it, err := d.item(ctx, e)
		if err != nil {
			return Message{}, err
		}
		msg.Items = append(msg.Items, it)
	}
	return msg, nil
}

// item describes one event, reading the request it is about.
func (d *Dispatcher) item(ctx context.Context, e *store.NoticeEvent) (Item, error) {
	k := Kind(e.Kind)
	it := Item{Kind: k, Title: k.Label(), Detail: e.Detail, At: e.CreatedAt}
	switch {
	case e.RequestID != nil:
		it.Link = d.publicURL + "/requests/" + *e.RequestID
		req, err := store.RequestGet(ctx, d.pool, *e.RequestID)
		if errors.Is(err, store.ErrNotFound) {
			return it, nil
		} else if err != nil {
			return Item{}, err
		}
		var a struct {
			Target string `json:"target"`
			Risk   string `json:"risk"`
		}
		_ = json.Unmarshal(req.Action, &a) // a stored action is valid JSON; a missing field stays empty
		it.ActionKind, it.Summary, it.Target, it.Risk, it.Rule, it.Deadline = req.ActionKind, req.Summary, a.Target, a.Risk, req.Rule, req.Deadline
		it.RequestID, it.PayloadHash, it.Pending = req.ID, req.PayloadHash, req.Status == vocab.RequestPending
	case e.BatchID != nil:
		it.Link = d.publicURL + "/batches/" + *e.BatchID
	case e.RunID != nil:
		it.Link = d.publicURL + "/runs/" + *e.RunID
	}
	return it, nil
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
