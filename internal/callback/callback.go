// Package callback delivers signed HTTP callbacks: a delivery is written to
// an outbox in the transaction that causes it and sent by a River job,
// retried with backoff until the receiver answers 2xx or the attempts run
// out, every attempt recorded. Outbound URLs are checked against SSRF.
package callback

import "time"

// Delivery is one callback to send: Body is signed with the secret of the
// token TokenID and POSTed to URL.
type Delivery struct {
	Subject string // what the callback is about, e.g. an approval id
	Event   string // e.g. "approval.decided"
	TokenID string // the API token whose callback secret signs the body
	// WebhookID, instead of a token, is the webhook subscription whose
	// secret signs the body (notification webhooks).
	WebhookID int64
	URL       string
	Body      []byte
}

// Record is a delivery with its progress, as the API and console show it.
type Record struct {
	ID             int64      `json:"id"`
	Subject        string     `json:"subject"`
	Event          string     `json:"event"`
	URL            string     `json:"url"`
	Status         string     `json:"status"` // pending, delivered, failed
	Attempts       int        `json:"attempts"`
	LastStatusCode *int       `json:"last_status_code,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	DeliveredAt    *time.Time `json:"delivered_at,omitempty"`
}
