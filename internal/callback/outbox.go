package callback

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/safehttp"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Limits of a delivery.
const (
	// MaxSubject and MaxEvent bound those fields, in bytes.
	MaxSubject = 200
	MaxEvent   = 100
	// DefaultMaxBody bounds a body: above any approval the engine accepts
	// (COUNTERSIGN_MAX_STEP_OUTPUT's default is 256 KiB).
	DefaultMaxBody = 8 << 20
)

// ErrInvalid is returned (wrapped, with the reason) for a delivery that
// cannot be stored.
var ErrInvalid = errors.New("invalid callback")

// Queue schedules the job that sends a delivery, in the transaction that
// writes it. jobs.Scheduler implements it.
type Queue interface {
	EnqueueCallback(ctx context.Context, tx pgx.Tx, id int64, at time.Time) error
}

// Outbox writes deliveries, reads their progress and redelivers failed ones.
type Outbox struct {
	pool   *pgxpool.Pool
	queue  Queue
	policy *safehttp.Policy
	now    func() time.Time
	// MaxBody bounds a delivery's body (DefaultMaxBody unless set).
	MaxBody int
}

// NewOutbox returns an Outbox on pool that schedules through queue and
// checks URLs with policy (nil: public addresses only). now is the clock
// (nil: time.Now).
func NewOutbox(pool *pgxpool.Pool, queue Queue, policy *safehttp.Policy, now func() time.Time) *Outbox {
	if now == nil {
		now = time.Now
	}
	return &Outbox{pool: pool, queue: queue, policy: policy, now: now, MaxBody: DefaultMaxBody}
}

// Check reports whether rawURL may receive callbacks, as far as can be told
// before connecting: http or https, a host, no user information, bounded
// length, and a literal address only if it is public or allow-listed. A
// host name's addresses are checked at each connection. The error's text
// is meant for whoever gave the URL; it wraps safehttp.ErrRefused.
func (o *Outbox) Check(rawURL string) error {
	_, err := o.policy.CheckURL(rawURL)
	return err
}

// Enqueue writes d to the outbox and schedules its job, both in tx: nothing
// is sent unless tx commits. d.TokenID is the public id (cs_…) of the token
// whose callback secret signs the body; empty sends it unsigned. The URL is
// not checked against the address policy here (Check does that at submit
// time, the sender again when it connects): a URL refused later is recorded
// as a failed delivery rather than failing what caused it. Returns its id;
// an error wrapping ErrInvalid for empty or oversized fields, store.ErrNotFound
// for an unknown token.
func (o *Outbox) Enqueue(ctx context.Context, tx pgx.Tx, d Delivery) (int64, error) {
	switch {
	case d.Subject == "" || len(d.Subject) > MaxSubject || !utf8.ValidString(d.Subject) || strings.ContainsRune(d.Subject, 0):
		return 0, fmt.Errorf("%w: the subject must be 1 to %d bytes of text", ErrInvalid, MaxSubject)
	case d.Event == "" || len(d.Event) > MaxEvent || !utf8.ValidString(d.Event) || strings.ContainsRune(d.Event, 0):
		return 0, fmt.Errorf("%w: the event must be 1 to %d bytes of text", ErrInvalid, MaxEvent)
	case d.URL == "" || len(d.URL) > safehttp.MaxURL || !utf8.ValidString(d.URL) || strings.ContainsRune(d.URL, 0):
		return 0, fmt.Errorf("%w: the URL must be 1 to %d bytes of text", ErrInvalid, safehttp.MaxURL)
	case len(d.Body) > o.MaxBody:
		return 0, fmt.Errorf("%w: the body is %d bytes, over %d", ErrInvalid, len(d.Body), o.MaxBody)
	}
	var token *string
	if d.TokenID != "" {
		token = &d.TokenID
	}
	var webhook *int64
	if d.WebhookID != 0 {
		webhook = &d.WebhookID
	}
	body := d.Body
	if body == nil {
		body = []byte{}
	}
	now := o.now()
	id, err := store.DeliveryInsert(ctx, tx, store.DeliveryInsertParams{Subject: d.Subject, Event: d.Event, TokenID: token, WebhookID: webhook,
		URL: d.URL, Body: body, NextAttemptAt: now})
	if err != nil {
		return 0, fmt.Errorf("enqueue callback: %w", err)
	}
	if err := o.queue.EnqueueCallback(ctx, tx, id, now); err != nil {
		return 0, fmt.Errorf("enqueue callback job: %w", err)
	}
	return id, nil
}

// List returns the deliveries about subject, oldest first (an empty list
// when there are none).
func (o *Outbox) List(ctx context.Context, subject string) ([]Record, error) {
	ds, err := store.DeliveryListBySubject(ctx, o.pool, subject)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(ds))
	for _, d := range ds {
		out = append(out, RecordOf(d))
	}
	return out, nil
}

// RecordOf converts an outbox row to a Record.
func RecordOf(d *store.Delivery) Record {
	r := Record{ID: d.ID, Subject: d.Subject, Event: d.Event, URL: d.URL, Status: string(d.Status), Attempts: d.Attempts,
		LastStatusCode: d.LastStatusCode, CreatedAt: d.CreatedAt, DeliveredAt: d.DeliveredAt}
	if d.LastError != nil {
		r.LastError = *d.LastError
	}
	if d.Status == vocab.DeliveryPending {
		r.NextAttemptAt = d.NextAttemptAt
	}
	return r
}

// Redeliver sends a failed delivery again: it becomes pending and gets a
// new job with a fresh set of attempts, in one transaction. Returns
// store.ErrNotFound when there is no failed delivery with that id.
func (o *Outbox) Redeliver(ctx context.Context, id int64) error {
	return store.WithTx(ctx, o.pool, func(ctx context.Context, tx pgx.Tx) error {
		now := o.now()
		if err := store.DeliveryRedeliver(ctx, tx, id, now); err != nil {
			return err
		}
		return o.queue.EnqueueCallback(ctx, tx, id, now)
	})
}
