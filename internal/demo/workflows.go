// Package demo holds the demo workflows, their offline model, and the stream
// of demo runs that `countersign demo` keeps flowing. Every workflow goes
// collect_context → propose_change → run_checks → request_approval →
// apply_change → summarize_result, and proposes again when a reviewer
// requests changes. An edited action has its checks run again
// (run_checks_on_edit) before apply_change, and is reviewed again when one of
// them fails.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// Register adds the three demo workflows to r and their generators to model.
func Register(r *workflow.Registry, model *ai.Offline) {
	workflow.Register(r, "support_triage", SupportTriage, workflow.Options{
		Description: "Classify a support ticket and propose a reply, a ticket update or a refund.",
		MaxSteps:    30, Example: Ticket{ID: "T-1001", Customer: "ada@example.com", Subject: "Refund please", Body: "My order arrived broken, I want a refund.", OrderTotal: 120},
	})
	workflow.Register(r, "order_support", OrderSupport, workflow.Options{
		Description: "Look the order up in the order service, propose a reply, a ticket update or a refund, and confirm it to the customer; a refused confirmation reverts the change.",
		MaxSteps:    30, StepTimeout: OrderTimeout,
		Example: Ticket{ID: "T-5001", Customer: "ada@example.com", Subject: "Charged twice", Body: "I was charged twice for order 5521.", OrderTotal: 80},
	})
	workflow.Compensate(r, "order_support", "apply_change", revertChange)
	workflow.Register(r, "lead_enrichment", LeadEnrichment, workflow.Options{
		Description: "Propose CRM field updates for a new lead.",
		MaxSteps:    30, Example: Lead{ID: "L-2001", Company: "Initech", Email: "bill@initech.example", Employees: 120},
	})
	workflow.Register(r, "content_review", ContentReview, workflow.Options{
		Description: "Propose edits to a document, shown as a diff.",
		MaxSteps:    30, Example: Document{ID: "D-3001", Title: "Pricing page", Text: "Our pricing is simple. Teh basic plan costs $10."},
	})
	model.Handle("support_triage.propose", offlineTriage)
	model.Handle("lead_enrichment.propose", offlineEnrich)
	model.Handle("content_review.propose", offlineReview)
	model.Handle("summarize", offlineSummary)
}

// Proposal is what a model proposes: the action and its rationale.
type Proposal struct {
	Kind       string         `json:"kind"`
	Target     string         `json:"target"`
	Summary    string         `json:"summary"`
	Params     map[string]any `json:"params"`
	Current    map[string]any `json:"current,omitempty"`
	Risk       string         `json:"risk"`
	Reversible bool           `json:"reversible"`
	Cost       float64        `json:"estimated_cost"`
	Rationale  string         `json:"rationale"`
}

// Result is a demo run's output.
type Result struct {
	Action    string         `json:"action"`
	Verdict   vocab.Verdict  `json:"verdict"`
	Params    map[string]any `json:"params"`
	OutboxID  int64          `json:"outbox_id"`
	Summary   string         `json:"summary"`
	Proposals int            `json:"proposals"`
}

// pipeline is the shape all three demo workflows share; each supplies its
// context lookup and its checks.
func pipeline[C any](ctx context.Context, task string, collect func() C, checks func(C, Proposal) []workflow.Check) (Result, error) {
	c, err := workflow.Step(ctx, "collect_context", func(context.Context) (C, error) { return collect(), nil })
	if err != nil {
		return Result{}, err
	}
	feedback := ""
	for round := 1; ; round++ {
		input, _ := json.Marshal(map[string]any{"context": c, "feedback": feedback, "round": round})
		p, err := workflow.Generate[Proposal](ctx, "propose_change", ai.Request{
			Task: task, Input: input,
			Messages: []ai.Message{
				{Role: "system", Content: "Propose one change as JSON: kind, target, summary, params, current, risk, reversible, estimated_cost, rationale."},
				{Role: "user", Content: string(input)},
			},
		})
		if err != nil {
			return Result{}, err
		}
		action, err := workflow.Step(ctx, "run_checks", func(context.Context) (workflow.Action, error) {
			return workflow.Action{Kind: p.Kind, Target: p.Target, Summary: p.Summary, Params: p.Params,
				Current: p.Current, Risk: p.Risk, Reversible: p.Reversible, EstimatedCost: p.Cost,
				Rationale: p.Rationale, Checks: checks(c, p)}, nil
		})
		if err != nil {
			return Result{}, err
		}
		d, err := review(ctx, action, func(params map[string]any) []workflow.Check {
			edited := p
			edited.Params = params
			return checks(c, edited)
		})
		if err != nil {
			return Result{}, err
		}
		if d.ChangesRequested() {
			feedback = d.Reason
			continue
		}
		id, err := workflow.Effect(ctx, "apply_change", func(ctx context.Context, ec workflow.EffectContext) (int64, error) {
			return store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), action.Kind, d.Params)
		})
		if err != nil {
			return Result{}, err
		}
		in, _ := json.Marshal(map[string]any{"kind": action.Kind, "target": action.Target, "verdict": d.Verdict, "actor": d.Actor})
		sum, err := workflow.Generate[struct {
			Summary string `json:"summary"`
		}](ctx, "summarize_result", ai.Request{Task: "summarize", Input: in,
			Messages: []ai.Message{{Role: "user", Content: "Summarize in one sentence what was done: " + string(in)}}})
		if err != nil {
			return Result{}, err
		}
		return Result{Action: action.Kind, Verdict: d.Verdict, Params: d.Params, OutboxID: id,
			Summary: sum.Summary, Proposals: round}, nil
	}
}

// review asks for approval of action. The checks a reviewer saw were about
// the proposal's parameters, so after an edit they run again on the edited
// ones (run_checks_on_edit); an edit that fails one is not applied but asked
// about again, as the edited action with its own checks, so that whoever
// approves it sees what fails. An edit whose checks pass is applied.
func review(ctx context.Context, action workflow.Action, check func(params map[string]any) []workflow.Check) (workflow.Decision, error) {
	for {
		d, err := workflow.RequestApproval(ctx, action)
		if err != nil || d.Verdict != vocab.VerdictEdit {
			return d, err
		}
		again, err := workflow.Step(ctx, "run_checks_on_edit", func(context.Context) ([]workflow.Check, error) {
			return check(d.Params), nil
		})
		if err != nil {
			return d, err
		}
		failed := failedChecks(again)
		if len(failed) == 0 {
			return d, nil
		}
		action.Params, action.Checks = d.Params, again
		action.Summary = fmt.Sprintf("Edited by %s, to review again (was: %s)", d.Actor, action.Summary)
		action.Rationale = fmt.Sprintf("Edited by %s; the edited action fails %s, so it is reviewed again. %s",
			d.Actor, strings.Join(failed, "; "), action.Rationale)
	}
}

// failedChecks describes the checks that did not pass.
func failedChecks(checks []workflow.Check) []string {
	var failed []string
	for _, c := range checks {
		if !c.Passed {
			if c.Detail != "" {
				failed = append(failed, c.Name+" ("+c.Detail+")")
			} else {
				failed = append(failed, c.Name)
			}
		}
	}
	return failed
}

// Ticket is support_triage's input.
type Ticket struct {
	ID         string  `json:"ticket_id"`
	Customer   string  `json:"customer"`
	Subject    string  `json:"subject"`
	Body       string  `json:"body"`
	OrderTotal float64 `json:"order_total"`
	// Simulate names the failures of outside systems an order_support run
	// meets (see Simulation): the demo stream sets it on some tickets so
	// that the dashboard's timeouts, retries and rollbacks have data.
	Simulate []Simulation `json:"simulate,omitempty"`
}

// OrderSupport looks the ticket's order up in the order service (retried:
// it times out and refuses now and then), then triages the ticket as
// SupportTriage does, and finally confirms what was done to the customer.
// When the confirmation is refused for good, the applied change is reverted
// (apply_change's undo, revertChange) and the run ends compensated.
func OrderSupport(ctx context.Context, t Ticket) (Result, error) {
	if _, err := workflow.Step(ctx, "look_up_order", func(ctx context.Context) (Order, error) {
		return orders.lookUp(ctx, workflow.RunID(ctx), t)
	}, workflow.WithRetry(orderRetry)); err != nil {
		return Result{}, err
	}
	res, err := SupportTriage(ctx, t)
	if err != nil {
		return res, err
	}
	if _, err := workflow.Effect(ctx, "confirm_to_customer", func(ctx context.Context, ec workflow.EffectContext) (int64, error) {
		if t.simulates(MailBounce) {
			return 0, workflow.Fail("mail_bounced", "the customer's mail server refused the confirmation")
		}
		return store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), "email.confirmation",
			map[string]any{"to": t.Customer, "ticket_id": t.ID, "summary": res.Summary})
	}); err != nil {
		return res, err
	}
	return res, nil
}

// SupportTriage classifies a ticket and proposes a reply, an update or a refund.
func SupportTriage(ctx context.Context, t Ticket) (Result, error) {
	return pipeline(ctx, "support_triage.propose", func() Ticket { return t },
		func(t Ticket, p Proposal) []workflow.Check {
			checks := []workflow.Check{{Name: "customer on file", Passed: t.Customer != "", Detail: t.Customer}}
			if amount, ok := p.Params["amount"].(float64); ok {
				checks = append(checks, workflow.Check{Name: "refund within order total", Passed: amount <= t.OrderTotal,
					Detail: fmt.Sprintf("refund %.2f of order %.2f", amount, t.OrderTotal)})
			}
			return checks
		})
}

// Lead is lead_enrichment's input.
type Lead struct {
	ID        string `json:"lead_id"`
	Company   string `json:"company"`
	Email     string `json:"email"`
	Employees int    `json:"employees"`
	Industry  string `json:"industry,omitempty"`
}

// LeadEnrichment proposes CRM field updates for a lead.
func LeadEnrichment(ctx context.Context, l Lead) (Result, error) {
	return pipeline(ctx, "lead_enrichment.propose", func() Lead { return l },
		func(l Lead, p Proposal) []workflow.Check {
			fields, _ := p.Params["fields"].(map[string]any)
			return []workflow.Check{
				{Name: "lead exists", Passed: l.ID != "", Detail: l.ID},
				{Name: "no more than 3 fields", Passed: len(fields) <= 3, Detail: fmt.Sprintf("%d fields", len(fields))},
			}
		})
}

// Document is content_review's input.
type Document struct {
	ID    string `json:"doc_id"`
	Title string `json:"title"`
	Text  string `json:"text"`
}

// ContentReview proposes edits to a document.
func ContentReview(ctx context.Context, d Document) (Result, error) {
	return pipeline(ctx, "content_review.propose", func() Document { return d },
		func(d Document, p Proposal) []workflow.Check {
			text, _ := p.Params["text"].(string)
			return []workflow.Check{
				{Name: "document not empty after edit", Passed: len(text) > 0},
				{Name: "length change under 50%", Passed: len(text)*2 >= len(d.Text), Detail: fmt.Sprintf("%d → %d characters", len(d.Text), len(text))},
			}
		})
}
