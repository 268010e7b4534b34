package main

import (
	"context"
	"fmt"

	"github.com/countersign/countersign"
)

// RefundInput is a run's input: POST /api/v1/runs with {"workflow": "refund", "input": {…}}.
type RefundInput struct {
	Order  string  `json:"order"`
	Amount float64 `json:"amount"`
	Reason string  `json:"reason"`
}

// Refund looks the order up, asks a reviewer (the policy decides whether one
// is needed) and issues the refund exactly once.
func Refund(ctx context.Context, in RefundInput) (string, error) {
	paid, err := countersign.Step(ctx, "look_up_order", func(ctx context.Context) (float64, error) {
		return 120, nil // ask the order service; the answer is recorded
	})
	if err != nil {
		return "", err
	}
	d, err := countersign.RequestApproval(ctx, countersign.Action{
		Kind: "refund.issue", Target: "order:" + in.Order, Summary: fmt.Sprintf("Refund %.2f on order %s", in.Amount, in.Order),
		Params: map[string]any{"order": in.Order, "amount": in.Amount}, Current: map[string]any{"paid": paid},
		Risk: "medium", Rationale: in.Reason,
		Checks: []countersign.Check{{Name: "no more than was paid", Passed: in.Amount <= paid}},
	})
	if err != nil {
		return "", err // the run waits for a reviewer: return the error as it is
	}
	if !d.Approved() {
		return "", countersign.Fail("changes_requested", d.Reason)
	}
	return countersign.Effect(ctx, "issue_refund", func(ctx context.Context, ec countersign.EffectContext) (string, error) {
		// Call the payment provider with ec.Key as its idempotency key.
		return fmt.Sprintf("refunded %v on order %v (key %s)", d.Params["amount"], d.Params["order"], ec.Key), nil
	})
}
