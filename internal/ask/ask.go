// Package ask is the approvals service: an agent in any language files an
// action for approval (POST /api/v1/approvals, the MCP server, `countersign
// ask`) and reads or waits for its outcome. An approval is a run of the
// built-in workflow countersign.approval, so that it is durable and decided
// exactly once by the same policy, inbox, batches, deadlines and audit as a
// workflow's request: its steps are request_approval and, when the agent gave
// a callback URL, the callback effect, which writes a delivery to the
// callback outbox in the step's transaction. An approval's id is its run's id.
package ask

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/workflow"
)

// Workflow is the name of the built-in workflow an approval runs.
const Workflow = "countersign.approval"

// EventDecided is the callback event sent once an approval is decided.
const EventDecided = "approval.decided"

// Limits of a submission.
const (
	MaxKey     = 200      // idempotency key, in bytes
	MaxContext = 16 << 10 // the agent's context object, in bytes of JSON
	// MaxWait bounds a long poll: a client that wants longer asks again.
	MaxWait = 60 * time.Second
)

// Statuses of an approval.
const (
	StatusPending          = "pending"
	StatusApproved         = "approved"
	StatusRejected         = "rejected"
	StatusChangesRequested = "changes_requested"
	StatusCancelled        = "cancelled"
	StatusFailed           = "failed"
)

var (
	// ErrBadRequest is a submission the caller must correct: a missing or
	// malformed field. The message says which.
	ErrBadRequest = errors.New("bad request")
	// ErrTooLarge is an action or context over its limit.
	ErrTooLarge = errors.New("too large")
	// ErrIdempotencyConflict is an idempotency key used before with another body.
	ErrIdempotencyConflict = errors.New("this idempotency key was used with a different body")
	// ErrRevision is a revision naming an approval the caller cannot revise
	// (unknown, filed by someone else, or not an approval).
	ErrRevision = errors.New("invalid revision")
	// ErrNotRevisable is a revision of an approval that did not end
	// changes_requested.
	ErrNotRevisable = errors.New("not revisable")
)

// Callbacks sends the callback of a decided approval; internal/callback
// implements it.
type Callbacks interface {
	// Check refuses a URL at submit time (syntax, scheme, literal private
	// addresses); its message is for the client.
	Check(rawURL string) error
	// Enqueue writes a delivery to the outbox in tx and returns its id.
	Enqueue(ctx context.Context, tx pgx.Tx, d callback.Delivery) (int64, error)
	// List returns the deliveries about subject (an approval id), oldest first.
	List(ctx context.Context, subject string) ([]callback.Record, error)
}

// Receipts signs decision receipts; internal/receipt implements it.
type Receipts interface {
	// ForRequest returns the receipt of a decided request, nil and no error
	// while it is undecided.
	ForRequest(ctx context.Context, approvalID, requestID string) (*receipt.Receipt, error)
}

// Input is the run input of an approval: what the agent filed, who filed it
// and a hash of the body that names it, to tell a retry from a reuse of the
// key with a different body.
type Input struct {
	Action         workflow.Action `json:"action"`
	CallbackURL    string          `json:"callback_url,omitempty"`
	Context        json.RawMessage `json:"context,omitempty"`
	Revises        string          `json:"revises,omitempty"`
	Revision       int             `json:"revision,omitempty"`
	IdempotencyKey string          `json:"idempotency_key"`
	TokenID        string          `json:"token_id,omitempty"`
	UserID         int64           `json:"user_id"`
	BodyHash       string          `json:"body_hash"`
}

// UnmarshalJSON decodes an approval's input keeping its numbers as written
// (json.Number): a float64 would round an integer parameter over 2^53, and
// the action executed must be the action filed, digit for digit. Unknown
// fields are refused, as the engine refuses them in any run input.
func (in *Input) UnmarshalJSON(raw []byte) error {
	type plain Input // without this method
	return decodeNumbers(raw, (*plain)(in), true)
}

// decodeNumbers decodes one JSON value into v with numbers as json.Number,
// refusing unknown fields when strict.
func decodeNumbers(raw []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// Output is the run output of an approval.
type Output struct {
	Decision workflow.Decision `json:"decision"`
	// CallbackDelivery is the outbox id of the callback, when one was sent.
	CallbackDelivery int64 `json:"callback_delivery,omitempty"`
}

// Approval is an approval as the API answers it, the callback's body and
// the MCP tools' result: one shape for all three.
type Approval struct {
	ID             string           `json:"id"`
	Status         string           `json:"status"`
	Tier           string           `json:"tier,omitempty"`
	Rule           string           `json:"rule,omitempty"`
	PolicyVersion  int              `json:"policy_version,omitempty"`
	RequestID      string           `json:"request_id,omitempty"`
	ReviewURL      string           `json:"review_url,omitempty"`
	IdempotencyKey string           `json:"idempotency_key"`
	Action         workflow.Action  `json:"action"`
	Context        json.RawMessage  `json:"context,omitempty"`
	Revises        string           `json:"revises,omitempty"`
	Revision       int              `json:"revision"`
	Deadline       *time.Time       `json:"deadline,omitempty"`
	CreatedAt      time.Time        `json:"created_at"`
	Outcome        *Outcome         `json:"outcome,omitempty"`
	Receipt        *receipt.Receipt `json:"receipt,omitempty"`
	Callback       *CallbackInfo    `json:"callback,omitempty"`
	// Error says why an approval failed (status failed).
	Error string `json:"error,omitempty"`
}

// Decided reports whether the approval has its final answer.
func (a *Approval) Decided() bool { return a.Status != StatusPending }

// Outcome is how an approval was decided.
type Outcome struct {
	Verdict string `json:"verdict"`
	// Params are the parameters to execute: the edited ones after an edit.
	Params        map[string]any `json:"params"`
	Reason        string         `json:"reason,omitempty"`
	Comment       string         `json:"comment,omitempty"`
	DecidedBy     string         `json:"decided_by"`
	DecidedAt     time.Time      `json:"decided_at"`
	Rule          string         `json:"rule"`
	PolicyVersion int            `json:"policy_version"`
	// PayloadHash is the hash of the action as decided (the edited action after an edit).
	PayloadHash string `json:"payload_hash"`
}

// CallbackInfo is the callback URL an approval was filed with and its deliveries.
type CallbackInfo struct {
	URL        string            `json:"url"`
	Deliveries []callback.Record `json:"deliveries"`
}

// Register adds the countersign.approval workflow to r, bound to s: its
// callback step builds the body with s and sends it through s's Callbacks.
// A rejection resumes the run (Options.HandlesRejection) so that a rejected
// approval gets its callback too.
func (s *Service) Register(r *workflow.Registry) {
	workflow.Register(r, Workflow, s.run, workflow.Options{
		Description:      "An approval filed through the approvals API: the action's request, then the callback.",
		MaxSteps:         4,
		MaxModelCalls:    1,
		HandlesRejection: true,
		Internal:         true, // its input names the filer: only Submit writes it
	})
}

// run is the workflow function: the request, then the callback.
func (s *Service) run(ctx context.Context, in Input) (Output, error) {
	dec, err := workflow.RequestApproval(ctx, in.Action)
	if err != nil {
		return Output{}, err
	}
	if answer, ok := ctx.Value(answeredKey{}).(func(workflow.Decision)); ok {
		answer(dec) // decided and committed: the inline caller may answer now
	}
	out := Output{Decision: dec}
	if in.CallbackURL == "" {
		return out, nil
	}
	runID := workflow.RunID(ctx)
	out.CallbackDelivery, err = workflow.Effect(ctx, "callback", func(ctx context.Context, ec workflow.EffectContext) (int64, error) {
		if s.callbacks == nil {
			// Refused at submit time; a process without callbacks that
			// resumes an approval filed elsewhere cannot send it.
			return 0, workflow.Permanent(errors.New("callbacks are not configured in this process"))
		}
		a, err := s.build(ctx, ec.Tx, runID, false)
		if err != nil {
			return 0, err
		}
		body, err := json.Marshal(a)
		if err != nil {
			return 0, workflow.Permanent(err)
		}
		return s.callbacks.Enqueue(ctx, ec.Tx, callback.Delivery{Subject: runID, Event: EventDecided,
			TokenID: in.TokenID, URL: in.CallbackURL, Body: body})
	})
	return out, err
}
