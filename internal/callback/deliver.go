package callback

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/safehttp"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// MaxAttempts is how many times a delivery's job tries before the delivery
// is failed (a redelivery gets as many again).
const MaxAttempts = 8

// maxError bounds the error recorded for an attempt, in bytes.
const maxError = 500

// ErrNotDelivered is returned by Deliver when an attempt failed and another
// will follow.
var ErrNotDelivered = errors.New("callback not delivered")

// Backoff is the default wait after failed attempt n (1-based): 10 s, 30 s,
// 90 s, ... tripling, so that the eight attempts span about three hours and
// a receiver down for a deploy or an outage still gets the callback.
func Backoff(attempt int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < attempt && d < 4*time.Hour; i++ {
		d *= 3
	}
	return d
}

// Deliverer sends deliveries from the outbox and records every attempt.
type Deliverer struct {
	pool   *pgxpool.Pool
	policy *safehttp.Policy
	client *http.Client
	now    func() time.Time
	// BackoffFunc is the wait after a failed attempt (Backoff unless set);
	// the River worker's NextRetry reads it too.
	BackoffFunc func(attempt int) time.Duration
}

// NewDeliverer returns a Deliverer on pool whose connections obey policy
// (nil: public addresses only). now is the clock (nil: time.Now).
func NewDeliverer(pool *pgxpool.Pool, policy *safehttp.Policy, now func() time.Time) *Deliverer {
	if now == nil {
		now = time.Now
	}
	return &Deliverer{pool: pool, policy: policy, client: policy.Client(), now: now, BackoffFunc: Backoff}
}

// Deliver makes attempt number attempt (of its job, 1-based) at sending
// delivery id. The delivery's row stays locked from the status check until
// the attempt is recorded, so two jobs for one delivery never both send it,
// and a delivery already delivered or failed is not sent again. Returns nil
// when there is nothing more to do (delivered, failed for good, or not
// pending), an error wrapping ErrNotDelivered when a retry should follow,
// or the database's error (the attempt may then be retried).
func (d *Deliverer) Deliver(ctx context.Context, id int64, attempt int) error {
	// The record must be written even when the job's context ends during
	// the request: the database work runs on a context that is not cancelled
	// with it, and the request itself is bounded by the client's timeout.
	dbCtx := context.WithoutCancel(ctx)
	var retry error
	err := store.WithTx(dbCtx, d.pool, func(dbCtx context.Context, tx pgx.Tx) error {
		row, err := store.DeliveryLockForSend(dbCtx, tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if row.Status != vocab.DeliveryPending {
			return nil
		}
		start := time.Now()
		code, sendErr, permanent := d.send(ctx, row)
		p := store.DeliveryAttemptParams{ID: id, Duration: time.Since(start), At: d.now()}
		if code != 0 {
			p.StatusCode = &code
		}
		switch {
		case sendErr == nil:
			p.Status = vocab.DeliveryDelivered
		case permanent || attempt >= MaxAttempts:
			p.Status = vocab.DeliveryFailed
		default:
			p.Status = vocab.DeliveryPending
			next := p.At.Add(d.BackoffFunc(attempt))
			p.NextAttemptAt = &next
			retry = fmt.Errorf("%w: delivery %d attempt %d: %w", ErrNotDelivered, id, attempt, sendErr)
		}
		if sendErr != nil {
			msg := errorText(sendErr)
			p.Error = &msg
		}
		return store.DeliveryRecordAttempt(dbCtx, tx, p)
	})
	if err != nil {
		return fmt.Errorf("deliver callback %d: %w", id, err)
	}
	return retry
}

// send POSTs the delivery once. It returns the response's status code (0
// when there was none), an error unless the receiver answered 2xx, and
// whether that error is permanent: a URL or address the policy refuses
// will be refused on every attempt.
func (d *Deliverer) send(ctx context.Context, row *store.DeliveryToSend) (code int, err error, permanent bool) {
	if _, err := d.policy.CheckURL(row.URL); err != nil {
		return 0, err, true
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, row.URL, strings.NewReader(string(row.Body)))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", safehttp.ErrRefused, err), true
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Countersign-Callback/1")
	req.Header.Set(HeaderEvent, row.Event)
	req.Header.Set(HeaderDelivery, strconv.FormatInt(row.ID, 10))
	if row.Secret != nil {
		req.Header.Set(HeaderSignature, Sign(row.Secret, time.Now(), row.Body))
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err, errors.Is(err, safehttp.ErrRefused)
	}
	// The body is read (bounded) so the connection can be reused; only its
	// start is kept, as the error of a refused delivery.
	body, _, readErr := safehttp.ReadBody(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, nil, false
	}
	msg := "HTTP " + strconv.Itoa(resp.StatusCode)
	if b := strings.TrimSpace(string(body[:min(len(body), 200)])); b != "" {
		msg += ": " + b
	} else if readErr != nil {
		msg += ": " + readErr.Error()
	}
	return resp.StatusCode, errors.New(msg), false
}

// errorText is err as stored: valid UTF-8 without NUL (PostgreSQL text
// holds neither), at most maxError bytes.
func errorText(err error) string {
	s := strings.ToValidUTF8(strings.ReplaceAll(err.Error(), "\x00", ""), "\uFFFD")
	if len(s) > maxError {
		s = s[:maxError]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}
