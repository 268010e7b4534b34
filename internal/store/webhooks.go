package store

import (
	"context"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"
)

// Webhook is a subscription: events of the kinds Events POSTed to URL.
// Its secret is never read back.
type Webhook struct {
	ID        int64
	URL       string
	Events    []string
	CreatedBy string
	CreatedAt time.Time
}

// WebhookInsert stores a subscription. Returns ErrInvalidInput when a
// column's check refuses it.
func WebhookInsert(ctx context.Context, db DBTX, url string, events []string, secret []byte, by string) (*Webhook, error) {
	r, err := queries.WebhookInsert(ctx, db, dbsqlc.WebhookInsertParams{Url: url, Events: events, Secret: secret, CreatedBy: by})
	if err != nil {
		return nil, fmt.Errorf("insert webhook: %w", interpret(err))
	}
	return &Webhook{ID: r.ID, URL: r.Url, Events: r.Events, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt}, nil
}

// WebhookList returns every subscription, oldest first.
func WebhookList(ctx context.Context, db DBTX) ([]*Webhook, error) {
	rows, err := queries.WebhookList(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", interpret(err))
	}
	out := make([]*Webhook, 0, len(rows))
	for _, r := range rows {
		out = append(out, &Webhook{ID: r.ID, URL: r.Url, Events: r.Events, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt})
	}
	return out, nil
}

// WebhookTarget is a subscription an event goes to.
type WebhookTarget struct {
	ID  int64
	URL string
}

// WebhookListForEvent returns the subscriptions to kind.
func WebhookListForEvent(ctx context.Context, db DBTX, kind string) ([]WebhookTarget, error) {
	rows, err := queries.WebhookListForEvent(ctx, db, kind)
	if err != nil {
		return nil, fmt.Errorf("list webhooks for %s: %w", kind, interpret(err))
	}
	out := make([]WebhookTarget, 0, len(rows))
	for _, r := range rows {
		out = append(out, WebhookTarget{ID: r.ID, URL: r.Url})
	}
	return out, nil
}

// WebhookDelete deletes a subscription and its deliveries. Returns
// ErrNotFound when there is none with that id.
func WebhookDelete(ctx context.Context, db DBTX, id int64) error {
	if err := oneRow(queries.WebhookDelete(ctx, db, id)); err != nil {
		return fmt.Errorf("delete webhook %d: %w", id, err)
	}
	return nil
}

// WebhookDelivered reports whether subscription id already has a delivery
// about subject.
func WebhookDelivered(ctx context.Context, db DBTX, id int64, subject string) (bool, error) {
	ok, err := queries.WebhookDelivered(ctx, db, dbsqlc.WebhookDeliveredParams{WebhookID: &id, Subject: subject})
	if err != nil {
		return false, fmt.Errorf("webhook %d delivery of %s: %w", id, subject, interpret(err))
	}
	return ok, nil
}
