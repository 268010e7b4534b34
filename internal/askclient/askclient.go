// Package askclient is a client of the approvals API (POST /api/v1/approvals,
// GET /api/v1/approvals/{id}?wait=) as an agent uses it: file an action, then
// long-poll until a person or the policy decides it. `countersign ask` is
// built on it; it imports no testing package and nothing of the server, so
// that it speaks only the documented wire format.
package askclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// MaxWait is the longest one long-poll may ask the server to wait (the
// server refuses more).
const MaxWait = 60 * time.Second

// maxAnswer bounds what is read of one answer: an approval with its receipt
// and deliveries is a few kilobytes, so a megabyte is a broken server.
const maxAnswer = 1 << 20

// Statuses of an approval.
const (
	StatusPending          = "pending"
	StatusApproved         = "approved"
	StatusRejected         = "rejected"
	StatusChangesRequested = "changes_requested"
	StatusCancelled        = "cancelled"
	StatusFailed           = "failed"
)

// Request is the body of POST /api/v1/approvals.
type Request struct {
	IdempotencyKey string          `json:"idempotency_key"`
	Action         json.RawMessage `json:"action"`
	CallbackURL    string          `json:"callback_url,omitempty"`
	Context        json.RawMessage `json:"context,omitempty"`
	Revises        string          `json:"revises,omitempty"`
}

// Approval is what the API answers, with Raw the exact JSON it sent; the
// fields are the few a caller branches on.
type Approval struct {
	ID      string          `json:"id"`
	Status  string          `json:"status"`
	Tier    string          `json:"tier"`
	Rule    string          `json:"rule"`
	Outcome *Outcome        `json:"outcome,omitempty"`
	Raw     json.RawMessage `json:"-"`
}

// Outcome is the decision on an approval.
type Outcome struct {
	Verdict   string          `json:"verdict"`
	Params    json.RawMessage `json:"params,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	DecidedBy string          `json:"decided_by"`
}

// Decided reports whether the approval has an outcome.
func (a *Approval) Decided() bool { return a.Status != StatusPending }

// APIError is an answer other than 200 or 202: its status and the error the
// API described.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("the server answered %d", e.Status)
	}
	return fmt.Sprintf("the server answered %d: %s", e.Status, e.Message)
}

// Client calls the approvals API at Base with Token.
type Client struct {
	Base  string // e.g. https://countersign.example.com
	Token string
	HTTP  *http.Client
}

// New returns a client. Its HTTP client has no overall timeout, since a
// long-poll lasts a minute; each call bounds itself by its wait.
func New(base, token string) *Client {
	return &Client{Base: strings.TrimSuffix(base, "/"), Token: token, HTTP: &http.Client{
		// An API answer is never a redirect; following one would send the
		// token wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Submit files an approval. The same idempotency key returns the same
// approval, so a call that failed on the way may be repeated. Returns an
// *APIError for an answer other than 200 or 202.
func (c *Client) Submit(ctx context.Context, r Request) (*Approval, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode the request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return c.do(ctx, http.MethodPost, "/api/v1/approvals", body)
}

// Get returns an approval, waiting up to wait (at most MaxWait) for it to be
// decided. Returns an *APIError for an answer other than 200.
func (c *Client) Get(ctx context.Context, id string, wait time.Duration) (*Approval, error) {
	wait = min(max(wait, 0), MaxWait)
	path := "/api/v1/approvals/" + url.PathEscape(id)
	if wait > 0 {
		path += "?wait=" + url.QueryEscape(wait.Round(time.Second).String())
	}
	// The server answers when the wait ends; beyond it by this much, the
	// connection is taken for lost.
	ctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	return c.do(ctx, http.MethodGet, path, nil)
}

// Wait long-polls the approval in slices of at most MaxWait until it is
// decided or within has passed, and returns it as last seen: still pending
// when time ran out. A lost connection is retried until within has passed,
// since reading an approval changes nothing.
func (c *Client) Wait(ctx context.Context, a *Approval, within time.Duration) (*Approval, error) {
	deadline := time.Now().Add(within)
	backoff := 250 * time.Millisecond
	for !a.Decided() {
		left := time.Until(deadline)
		if left < time.Second {
			return a, nil
		}
		next, err := c.Get(ctx, a.ID, left)
		var apiErr *APIError
		switch {
		case err == nil:
			a, backoff = next, 250*time.Millisecond
		case ctx.Err() != nil:
			return a, ctx.Err()
		case errors.As(err, &apiErr) && apiErr.Status < 500:
			return a, err
		default:
			if time.Until(deadline) < backoff {
				return a, err
			}
			time.Sleep(backoff)
			backoff = min(2*backoff, 5*time.Second)
		}
	}
	return a, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte) (*Approval, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err // a *url.Error, which names the method and address
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		apiErr := &APIError{Status: resp.StatusCode}
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil {
			apiErr.Code, apiErr.Message = e.Error.Code, e.Error.Message
		}
		return nil, apiErr
	}
	var a Approval
	if err := json.Unmarshal(raw, &a); err != nil || a.ID == "" || a.Status == "" {
		return nil, fmt.Errorf("%s %s: the answer is not an approval (%d, %.80q)", method, path, resp.StatusCode, raw)
	}
	a.Raw = raw
	return &a, nil
}
