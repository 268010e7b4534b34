package store

import (
	"context"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"
	"github.com/countersign/countersign/vocab"
)

// Delivery is an outbox row without its body.
type Delivery struct {
	ID             int64
	Subject        string
	Event          string
	URL            string
	Status         vocab.DeliveryStatus
	Attempts       int
	LastStatusCode *int
	LastError      *string
	NextAttemptAt  *time.Time
	CreatedAt      time.Time
	DeliveredAt    *time.Time
}

// DeliveryToSend is a delivery locked for sending, with its body and the
// secret that signs it (nil when it has no token).
type DeliveryToSend struct {
	ID       int64
	Subject  string
	Event    string
	URL      string
	Body     []byte
	Status   vocab.DeliveryStatus
	Attempts int
	Secret   []byte
}

// Attempt is one try at sending a delivery.
type Attempt struct {
	DeliveryID int64
	Attempt    int
	StatusCode *int
	Error      *string
	Duration   time.Duration
	At         time.Time
}

func deliveryFromInternal(r *dbsqlc.DeliveryListRow) *Delivery {
	return &Delivery{ID: r.ID, Subject: r.Subject, Event: r.Event, URL: r.Url, Status: vocab.DeliveryStatus(r.Status), Attempts: r.Attempts,
		LastStatusCode: r.LastStatusCode, LastError: r.LastError, NextAttemptAt: r.NextAttemptAt,
		CreatedAt: r.CreatedAt, DeliveredAt: r.DeliveredAt}
}

// DeliveryInsertParams are a new delivery's fields.
type DeliveryInsertParams struct {
	Subject       string
	Event         string
	TokenID       *string // the token's public id; nil sends it unsigned
	WebhookID     *int64  // the webhook subscription whose secret signs it instead
	URL           string
	Body          []byte
	NextAttemptAt time.Time
}

// DeliveryInsert writes a pending delivery and returns its id. Returns
// ErrNotFound when the token does not exist, ErrInvalidInput for an empty
// subject or event.
func DeliveryInsert(ctx context.Context, db DBTX, p DeliveryInsertParams) (int64, error) {
	id, err := queries.DeliveryInsert(ctx, db, dbsqlc.DeliveryInsertParams{Subject: p.Subject, Event: p.Event,
		TokenID: p.TokenID, WebhookID: p.WebhookID, Url: p.URL, Body: p.Body, NextAttemptAt: &p.NextAttemptAt})
	if err != nil {
		return 0, fmt.Errorf("insert delivery: %w", interpret(err))
	}
	return id, nil
}

// DeliveryListBySubject returns the deliveries about subject, oldest first.
func DeliveryListBySubject(ctx context.Context, db DBTX, subject string) ([]*Delivery, error) {
	rows, err := queries.DeliveryListBySubject(ctx, db, subject)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", interpret(err))
	}
	out := make([]*Delivery, 0, len(rows))
	for _, r := range rows {
		out = append(out, deliveryFromInternal((*dbsqlc.DeliveryListRow)(r)))
	}
	return out, nil
}

// DeliveryListParams filter and page the delivery list.
type DeliveryListParams struct {
	Status   vocab.DeliveryStatus // empty: every status
	BeforeAt *time.Time
	BeforeID *int64
	Limit    int
}

// DeliveryList returns deliveries newest first, before the cursor when one is given.
func DeliveryList(ctx context.Context, db DBTX, p DeliveryListParams) ([]*Delivery, error) {
	rows, err := queries.DeliveryList(ctx, db, dbsqlc.DeliveryListParams{Status: string(p.Status), BeforeAt: p.BeforeAt,
		BeforeID: p.BeforeID, Lim: int32(p.Limit)})
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", interpret(err))
	}
	out := make([]*Delivery, 0, len(rows))
	for _, r := range rows {
		out = append(out, deliveryFromInternal(r))
	}
	return out, nil
}

// DeliveryGet returns one delivery. Returns ErrNotFound.
func DeliveryGet(ctx context.Context, db DBTX, id int64) (*Delivery, error) {
	r, err := queries.DeliveryGet(ctx, db, id)
	if err != nil {
		return nil, fmt.Errorf("get delivery: %w", interpret(err))
	}
	return deliveryFromInternal((*dbsqlc.DeliveryListRow)(r)), nil
}

// DeliveryLockForSend returns a delivery with its body and secret, locked
// until the transaction ends. Returns ErrNotFound.
func DeliveryLockForSend(ctx context.Context, db DBTX, id int64) (*DeliveryToSend, error) {
	r, err := queries.DeliveryLockForSend(ctx, db, id)
	if err != nil {
		return nil, fmt.Errorf("lock delivery: %w", interpret(err))
	}
	return &DeliveryToSend{ID: r.ID, Subject: r.Subject, Event: r.Event, URL: r.Url, Body: r.Body, Status: vocab.DeliveryStatus(r.Status),
		Attempts: r.Attempts, Secret: r.CallbackSecret}, nil
}

// DeliveryAttemptParams are the outcome of one attempt.
type DeliveryAttemptParams struct {
	ID            int64
	Status        vocab.DeliveryStatus // the delivery's status after this attempt
	StatusCode    *int
	Error         *string
	NextAttemptAt *time.Time
	Duration      time.Duration
	At            time.Time
}

// DeliveryRecordAttempt counts an attempt on a pending delivery, sets its
// new status and appends the attempt. Returns ErrNotFound when the delivery
// is not pending.
func DeliveryRecordAttempt(ctx context.Context, db DBTX, p DeliveryAttemptParams) error {
	if err := oneRow(queries.DeliveryRecordAttempt(ctx, db, dbsqlc.DeliveryRecordAttemptParams{ID: p.ID, Status: string(p.Status),
		StatusCode: p.StatusCode, Error: p.Error, NextAttemptAt: p.NextAttemptAt, At: p.At})); err != nil {
		return fmt.Errorf("record delivery attempt: %w", err)
	}
	if err := queries.AttemptInsert(ctx, db, dbsqlc.AttemptInsertParams{DeliveryID: p.ID, StatusCode: p.StatusCode,
		Error: p.Error, DurationUs: p.Duration.Microseconds(), At: p.At}); err != nil {
		return fmt.Errorf("insert delivery attempt: %w", interpret(err))
	}
	return nil
}

// AttemptList returns a delivery's attempts in order.
func AttemptList(ctx context.Context, db DBTX, deliveryID int64) ([]*Attempt, error) {
	rows, err := queries.AttemptList(ctx, db, deliveryID)
	if err != nil {
		return nil, fmt.Errorf("list delivery attempts: %w", interpret(err))
	}
	out := make([]*Attempt, 0, len(rows))
	for _, r := range rows {
		out = append(out, &Attempt{DeliveryID: r.DeliveryID, Attempt: r.Attempt, StatusCode: r.StatusCode, Error: r.Error,
			Duration: time.Duration(r.DurationUs) * time.Microsecond, At: r.At})
	}
	return out, nil
}

// DeliveryRedeliver makes a failed delivery pending again, due at at.
// Returns ErrNotFound when there is no failed delivery with that id.
func DeliveryRedeliver(ctx context.Context, db DBTX, id int64, at time.Time) error {
	if err := oneRow(queries.DeliveryRedeliver(ctx, db, dbsqlc.DeliveryRedeliverParams{ID: id, At: at})); err != nil {
		return fmt.Errorf("redeliver: %w", err)
	}
	return nil
}
