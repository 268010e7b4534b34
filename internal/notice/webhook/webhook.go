// Package webhook sends notification events to URLs that admins subscribe
// by event kind. It is a notice.Hook: as an event is fanned out, each
// subscription to its kind gets one delivery in internal/callback's outbox,
// in the fan-out's transaction, so the same machinery as approval callbacks
// signs it (HMAC-SHA256 over timestamp and body, with the subscription's own
// secret), checks the address at connect time, retries with backoff and
// records every attempt.
package webhook

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/store"
)

// MaxSubscriptions bounds how many subscriptions exist, so that one event
// cannot fan out into an unbounded number of deliveries.
const MaxSubscriptions = 100

// ErrInvalid is returned (wrapped, with the reason) for a subscription that
// cannot be made.
var ErrInvalid = errors.New("invalid webhook")

// Service makes, lists and deletes subscriptions, and is the fan-out hook
// that writes their deliveries.
type Service struct {
	pool      *pgxpool.Pool
	outbox    *callback.Outbox
	publicURL string
}

// New returns the webhook service: subscriptions in pool, deliveries
// through outbox, links to the console at publicURL.
func New(pool *pgxpool.Pool, outbox *callback.Outbox, publicURL string) *Service {
	return &Service{pool: pool, outbox: outbox, publicURL: strings.TrimSuffix(publicURL, "/")}
}

// Created is a new subscription with its secret, which is shown this once.
type Created struct {
	*store.Webhook
	Secret string // 64 hex digits: the HMAC key, as callback.SecretText
}

// Create subscribes url to the event kinds. Returns an error wrapping
// ErrInvalid for an unknown kind, none at all, too many subscriptions, or a
// URL the outbound policy refuses (safehttp.ErrRefused is wrapped too).
func (s *Service) Create(ctx context.Context, url string, kinds []string, by string) (*Created, error) {
	if len(kinds) == 0 {
		return nil, fmt.Errorf("%w: choose at least one event", ErrInvalid)
	}
	var events []string
	for _, k := range kinds {
		if !notice.Kind(k).Valid() {
			return nil, fmt.Errorf("%w: unknown event %q", ErrInvalid, k)
		}
		if !slices.Contains(events, k) {
			events = append(events, k)
		}
	}
	if err := s.outbox.Check(url); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("webhook secret: %w", err)
	}
	var w *store.Webhook
	err := store.WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		existing, err := store.WebhookList(ctx, tx)
		if err != nil {
			return err
		}
		if len(existing) >= MaxSubscriptions {
			return fmt.Errorf("%w: at most %d subscriptions", ErrInvalid, MaxSubscriptions)
		}
		if w, err = store.WebhookInsert(ctx, tx, url, events, secret, by); err != nil {
			return err
		}
		_, err = audit.Append(ctx, tx, audit.Event{Actor: by, Subject: audit.WebhookSubject(w.ID),
			Details: audit.WebhookCreated{WebhookID: w.ID, URL: w.URL, Events: w.Events}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Created{Webhook: w, Secret: callback.SecretText(secret)}, nil
}

// List returns the subscriptions, oldest first.
func (s *Service) List(ctx context.Context) ([]*store.Webhook, error) {
	return store.WebhookList(ctx, s.pool)
}

// Delete removes a subscription, audited as by; its deliveries not yet
// sent are dropped. Returns store.ErrNotFound when there is none with that id.
func (s *Service) Delete(ctx context.Context, id int64, by string) error {
	return store.WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		if err := store.WebhookDelete(ctx, tx, id); err != nil {
			return err
		}
		_, err := audit.Append(ctx, tx, audit.Event{Actor: by, Subject: audit.WebhookSubject(id), Details: audit.WebhookDeleted{WebhookID: id}})
		return err
	})
}

// Body is what a webhook receives: the event, and the request it is about.
// Summary, detail and the like may hold model or agent text; JSON carries
// it as data.
type Body struct {
	ID        int64     `json:"id"`
	Kind      string    `json:"kind"`
	CreatedAt time.Time `json:"created_at"`
	RequestID *string   `json:"request_id,omitempty"`
	RunID     *string   `json:"run_id,omitempty"`
	BatchID   *string   `json:"batch_id,omitempty"`
	Detail    string    `json:"detail,omitempty"`
	Link      string    `json:"link,omitempty"`
	Request   *Request  `json:"request,omitempty"`
}

// Request is the request an event is about, as it stood at the fan-out.
type Request struct {
	Status      string     `json:"status"`
	ActionKind  string     `json:"action_kind"`
	Summary     string     `json:"summary"`
	Rule        string     `json:"rule"`
	Tier        string     `json:"tier"`
	PayloadHash string     `json:"payload_hash"`
	Deadline    *time.Time `json:"deadline,omitempty"`
	DecidedBy   *string    `json:"decided_by,omitempty"`
}

// Subject names an event's delivery in the outbox: one per subscription.
func Subject(eventID int64) string { return "notice:" + strconv.FormatInt(eventID, 10) }

// Fanout implements notice.Hook: a delivery of e for each subscription to
// its kind that has none yet, written in tx.
func (s *Service) Fanout(ctx context.Context, tx pgx.Tx, e *store.NoticeEvent) error {
	targets, err := store.WebhookListForEvent(ctx, tx, e.Kind)
	if err != nil || len(targets) == 0 {
		return err
	}
	body, err := s.body(ctx, tx, e)
	if err != nil {
		return err
	}
	subject := Subject(e.ID)
	for _, t := range targets {
		done, err := store.WebhookDelivered(ctx, tx, t.ID, subject)
		if err != nil {
			return err
		}
		if done {
			continue
		}
		if _, err := s.outbox.Enqueue(ctx, tx, callback.Delivery{Subject: subject, Event: e.Kind, WebhookID: t.ID, URL: t.URL, Body: body}); err != nil {
			return fmt.Errorf("webhook %d: %w", t.ID, err)
		}
	}
	return nil
}

func (s *Service) body(ctx context.Context, tx pgx.Tx, e *store.NoticeEvent) ([]byte, error) {
	b := Body{ID: e.ID, Kind: e.Kind, CreatedAt: e.CreatedAt.UTC(), RequestID: e.RequestID, RunID: e.RunID, BatchID: e.BatchID, Detail: e.Detail}
	switch {
	case e.RequestID != nil:
		b.Link = s.publicURL + "/requests/" + *e.RequestID
		req, err := store.RequestGet(ctx, tx, *e.RequestID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if req != nil {
			b.Request = &Request{Status: string(req.Status), ActionKind: req.ActionKind, Summary: req.Summary, Rule: req.Rule,
				Tier: string(req.Tier), PayloadHash: req.PayloadHash, Deadline: req.Deadline, DecidedBy: req.DecidedBy}
		}
	case e.BatchID != nil:
		b.Link = s.publicURL + "/batches/" + *e.BatchID
	case e.RunID != nil:
		b.Link = s.publicURL + "/runs/" + *e.RunID
	}
	out, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("webhook body of event %d: %w", e.ID, err)
	}
	return out, nil
}
