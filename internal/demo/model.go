package demo

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
)

// The offline model: realistic proposals computed from the inputs alone, so
// that the demo and the tests need no network and always agree.

type proposeInput[C any] struct {
	Context  C      `json:"context"`
	Feedback string `json:"feedback"`
	Round    int    `json:"round"`
}

func decode[C any](raw json.RawMessage) (proposeInput[C], error) {
	var in proposeInput[C]
	err := json.Unmarshal(raw, &in)
	return in, err
}

func pick(seed string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(seed))
	return int(h.Sum32() % uint32(n))
}

func revised(p Proposal, feedback string, round int) Proposal {
	if feedback != "" {
		p.Rationale += fmt.Sprintf(" Revised (round %d) after reviewer feedback: %q.", round, feedback)
		p.Summary += " (revised)"
	}
	return p
}

func offlineTriage(raw json.RawMessage) (any, error) {
	in, err := decode[Ticket](raw)
	if err != nil {
		return nil, err
	}
	t := in.Context
	text := strings.ToLower(t.Subject + " " + t.Body)
	var p Proposal
	switch {
	case strings.Contains(text, "refund") || strings.Contains(text, "broken") || strings.Contains(text, "charged twice"):
		amount := t.OrderTotal
		if in.Feedback != "" {
			amount = float64(int(amount*50)) / 100 // offer half after pushback
		}
		p = Proposal{Kind: "payment.refund", Target: "order:" + t.ID, Risk: "high", Reversible: false, Cost: amount,
			Summary:   fmt.Sprintf("Refund %.2f to %s for ticket %s", amount, t.Customer, t.ID),
			Params:    map[string]any{"amount": amount, "currency": "EUR", "customer": t.Customer, "reason": t.Subject},
			Rationale: fmt.Sprintf("The customer reports %q; the order total is %.2f and the policy allows a full refund for damaged goods.", t.Subject, t.OrderTotal)}
	case strings.Contains(text, "password") || strings.Contains(text, "login") || strings.Contains(text, "how do"):
		p = Proposal{Kind: "email.send", Target: "customer:" + t.Customer, Risk: "medium", Reversible: false,
			Summary: fmt.Sprintf("Reply to %s about %q", t.Customer, t.Subject),
			Params: map[string]any{"to": t.Customer, "subject": "Re: " + t.Subject,
				"body": fmt.Sprintf("Hello,\n\nThanks for writing about %q. You can reset your password from the sign-in page under \"Forgot password\". If that does not work, reply to this email.\n\nBest regards,\nSupport", t.Subject)},
			Rationale: "A how-to question with a documented answer: a templated reply resolves it."}
	default:
		priority := []string{"low", "normal", "high"}[pick(t.ID, 3)]
		p = Proposal{Kind: "ticket.update", Target: "ticket:" + t.ID, Risk: "low", Reversible: true,
			Summary:   fmt.Sprintf("Tag ticket %s as %s priority, category general", t.ID, priority),
			Params:    map[string]any{"fields": map[string]any{"priority": priority, "category": "general"}},
			Current:   map[string]any{"fields": map[string]any{"priority": "unset", "category": "unset"}},
			Rationale: "No refund or account issue detected; triage only."}
	}
	return revised(p, in.Feedback, in.Round), nil
}

var industries = []string{"Software", "Manufacturing", "Retail", "Healthcare", "Finance", "Logistics"}

func offlineEnrich(raw json.RawMessage) (any, error) {
	in, err := decode[Lead](raw)
	if err != nil {
		return nil, err
	}
	l := in.Context
	domain := l.Email
	if i := strings.LastIndex(domain, "@"); i >= 0 {
		domain = domain[i+1:]
	}
	if l.Industry != "" && l.Employees > 0 {
		return revised(Proposal{Kind: "crm.lookup", Target: "lead:" + l.ID, Risk: "low", Reversible: true,
			Summary:   fmt.Sprintf("Look up %s in the CRM (already enriched)", l.Company),
			Params:    map[string]any{"query": l.Company},
			Rationale: "The lead already has industry and size; only a read is needed."}, in.Feedback, in.Round), nil
	}
	fields := map[string]any{"industry": industries[pick(l.Company, len(industries))], "website": "https://" + domain}
	current := map[string]any{"industry": "", "website": ""}
	if l.Employees >= 200 {
		fields["segment"] = "enterprise"
		fields["owner"] = "enterprise-team"
		current["segment"], current["owner"] = "", ""
	}
	return revised(Proposal{Kind: "crm.update", Target: "lead:" + l.ID, Risk: "low", Reversible: true,
		Summary:   fmt.Sprintf("Update %d CRM fields of %s", len(fields), l.Company),
		Params:    map[string]any{"fields": fields},
		Current:   map[string]any{"fields": current},
		Rationale: fmt.Sprintf("Inferred from the email domain %s and company size %d.", domain, l.Employees)}, in.Feedback, in.Round), nil
}

var typos = map[string]string{"Teh": "The", "teh": "the", "recieve": "receive", "seperate": "separate", "occured": "occurred", "untill": "until"}

func offlineReview(raw json.RawMessage) (any, error) {
	in, err := decode[Document](raw)
	if err != nil {
		return nil, err
	}
	d := in.Context
	text, fixed := d.Text, 0
	for wrong, right := range typos {
		if strings.Contains(text, wrong) {
			fixed += strings.Count(text, wrong)
			text = strings.ReplaceAll(text, wrong, right)
		}
	}
	risk := "low"
	if fixed == 0 {
		text = strings.TrimSpace(text) + " Contact us with any questions."
		risk = "medium"
	}
	return revised(Proposal{Kind: "doc.edit", Target: "doc:" + d.ID, Risk: risk, Reversible: true,
		Summary:   fmt.Sprintf("Edit %q: %d spelling fixes", d.Title, fixed),
		Params:    map[string]any{"text": text},
		Current:   map[string]any{"text": d.Text},
		Rationale: "Spelling corrections; meaning unchanged."}, in.Feedback, in.Round), nil
}

func offlineSummary(raw json.RawMessage) (any, error) {
	var in struct{ Kind, Target, Verdict, Actor string }
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, err
	}
	return map[string]string{"summary": fmt.Sprintf("Applied %s to %s after %s by %s.", in.Kind, in.Target, in.Verdict, in.Actor)}, nil
}
