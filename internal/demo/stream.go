package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/countersign/countersign/internal/workflow"
)

var (
	customers = []string{"ada@example.com", "grace@example.org", "linus@example.net", "margaret@example.com", "alan@example.org"}
	subjects  = []struct{ subject, body string }{
		{"Refund for broken kettle", "The kettle arrived broken. I would like a refund."},
		{"Charged twice", "I was charged twice for order 5521, please refund one charge."},
		{"Cannot login", "I forgot my password and cannot login to my account."},
		{"How do I export invoices?", "How do I export my invoices as PDF?"},
		{"Delivery time", "When will my order ship? It has been a week."},
		{"Feature request", "It would be nice to have a dark mode."},
	}
	companies = []struct {
		name      string
		employees int
		industry  string
	}{{"Initech", 120, ""}, {"Globex", 900, ""}, {"Umbrella", 4000, "Healthcare"}, {"Hooli", 45, ""}, {"Vandelay Industries", 12, "Logistics"}}
	documents = []struct{ title, text string }{
		{"Pricing page", "Our pricing is simple. Teh basic plan costs $10 a month."},
		{"Onboarding email", "Welcome aboard! You will recieve your login details untill tomorrow."},
		{"Release notes", "This release fixes an issue that occured when exporting reports."},
		{"Privacy notice", "We keep your data seperate from other customers."},
		{"About us", "We build tools for careful teams."},
	}
)

// Input returns the nth demo run: which workflow, its business key and input.
// The stream is varied enough that every tier of the demo policy gets work.
func Input(n int, prefix string) (wf, key string, input json.RawMessage) {
	var v any
	switch n % 3 {
	case 0:
		s := subjects[(n/3)%len(subjects)] // n is a multiple of 3 here
		total := float64(20 + (n*137)%900)
		v = Ticket{ID: fmt.Sprintf("T-%d", 1000+n), Customer: customers[n%len(customers)], Subject: s.subject, Body: s.body, OrderTotal: total}
		wf, key = "support_triage", fmt.Sprintf("%sticket-%d", prefix, 1000+n)
		if n%2 == 0 { // every other ticket goes through the order service
			v = Ticket{ID: fmt.Sprintf("T-%d", 1000+n), Customer: customers[n%len(customers)], Subject: s.subject, Body: s.body, OrderTotal: total,
				Simulate: simulations(n / 6)}
			wf, key = "order_support", fmt.Sprintf("%sorder-%d", prefix, 1000+n)
		}
	case 1:
		c := companies[n%len(companies)]
		v = Lead{ID: fmt.Sprintf("L-%d", 2000+n), Company: c.name, Email: fmt.Sprintf("contact%d@%s.example", n, c.name[:3]), Employees: c.employees, Industry: c.industry}
		wf, key = "lead_enrichment", fmt.Sprintf("%slead-%d", prefix, 2000+n)
	default:
		d := documents[n%len(documents)]
		v = Document{ID: fmt.Sprintf("D-%d", 3000+n), Title: d.title, Text: d.text}
		wf, key = "content_review", fmt.Sprintf("%sdoc-%d", prefix, 3000+n)
	}
	input, _ = json.Marshal(v)
	return wf, key, input
}

// simulations are the outside failures the kth support ticket meets: about
// one in five has a slow order service, one in four a 503 from it, one in
// thirteen finds it down, and one in seven a bounced confirmation.
func simulations(k int) []Simulation {
	var out []Simulation
	switch {
	case k%13 == 7:
		return []Simulation{OrderServiceDown}
	case k%5 == 1:
		out = append(out, SlowOrderService)
	case k%4 == 2:
		out = append(out, OrderService503)
	}
	if k%7 == 3 {
		out = append(out, MailBounce)
	}
	return out
}

// MaxWaiting is how many pending requests the demo lets pile up: about a
// screenful of the inbox. Past it, new runs would only bury the ones there.
const MaxWaiting = 30

// Stream starts a demo run every interval until ctx ends. Keys carry the
// start time so that a restarted demo starts new runs instead of finding old
// ones. It starts none while more than MaxWaiting requests wait (as counted by
// waiting) and resumes when fewer do, logging each change once.
func Stream(ctx context.Context, engine *workflow.Engine, waiting func(context.Context) (int, error), interval time.Duration, logger *slog.Logger) {
	prefix := fmt.Sprintf("demo-%s-", time.Now().UTC().Format("0102T150405"))
	t := time.NewTicker(interval)
	defer t.Stop()
	paused := false
	for n := 0; ; {
		switch w, err := waiting(ctx); {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			// Not knowing is no reason to stop the demo.
			logger.Warn("demo cannot count waiting requests", "err", err)
		case !paused && w > MaxWaiting:
			paused = true
			logger.Info("demo paused: too many requests wait; resuming when fewer do", "waiting", w, "max", MaxWaiting)
		case paused && w < MaxWaiting:
			paused = false
			logger.Info("demo resumed", "waiting", w)
		}
		if !paused {
			wf, key, input := Input(n, prefix)
			n++
			run, _, err := engine.Start(ctx, workflow.StartParams{Workflow: wf, BusinessKey: key, Input: input, StartedBy: "demo"})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				logger.Warn("demo run not started", "workflow", wf, "err", err)
			} else {
				logger.Info("demo run started", "workflow", wf, "key", key, "run", run.ID)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
