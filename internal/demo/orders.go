package demo

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
)

// Simulation is a failure of an outside system that a demo ticket asks for.
type Simulation string

const (
	// SlowOrderService: the order service does not answer the run's first
	// lookup before the step's timeout; the retry gets an answer.
	SlowOrderService Simulation = "slow_order_service"
	// OrderService503: the first lookup is refused with a 503; the retry
	// gets an answer.
	OrderService503 Simulation = "order_service_503"
	// OrderServiceDown: every lookup is refused; the run fails once its
	// attempts are spent, before it proposed anything.
	OrderServiceDown Simulation = "order_service_down"
	// MailBounce: the confirmation to the customer is refused for good, after
	// the change was applied; the change is reverted.
	MailBounce Simulation = "mail_bounce"
)

func (t Ticket) simulates(s Simulation) bool { return slices.Contains(t.Simulate, s) }

// OrderTimeout is order_support's step timeout: the order service gets this
// long to answer a lookup. Read when the workflow is registered (tests
// shorten it).
var OrderTimeout = 20 * time.Second

// orderRetry is the lookup's retry policy: three attempts, 2 s then 4 s apart.
var orderRetry = workflow.RetryPolicy{MaxAttempts: 3, InitialInterval: 2 * time.Second, BackoffFactor: 2}

// Order is what the order service knows of a ticket's order.
type Order struct {
	TicketID string  `json:"ticket_id"`
	Total    float64 `json:"total"`
	Status   string  `json:"status"`
}

// orderService stands in for a shop's order API. It fails as real ones do,
// only when a ticket asks for it (Ticket.Simulate); it counts the lookups of
// each run in memory, so a restarted process starts counting again.
type orderService struct {
	mu    sync.Mutex
	calls map[string]int
}

var orders = &orderService{calls: map[string]int{}}

func (o *orderService) lookUp(ctx context.Context, runID string, t Ticket) (Order, error) {
	o.mu.Lock()
	o.calls[runID]++
	n := o.calls[runID]
	if len(o.calls) > 10_000 { // a demo that runs for days keeps no more than this
		clear(o.calls)
	}
	o.mu.Unlock()
	switch {
	case t.simulates(OrderServiceDown):
		return Order{}, workflow.Error("order_service_unavailable", "the order service answered 503 Service Unavailable")
	case t.simulates(OrderService503) && n == 1:
		return Order{}, workflow.Error("order_service_unavailable", "the order service answered 503 Service Unavailable")
	case t.simulates(SlowOrderService) && n == 1:
		<-ctx.Done() // the step's timeout ends the wait
		return Order{}, ctx.Err()
	}
	status := "delivered"
	if strings.Contains(strings.ToLower(t.Subject), "delivery") {
		status = "in transit"
	}
	return Order{TicketID: t.ID, Total: t.OrderTotal, Status: status}, nil
}

// revertChange is apply_change's undo: it puts the reversing action in the
// outbox, with its own idempotency key, in the undo's transaction.
func revertChange(ctx context.Context, ec workflow.EffectContext, outboxID int64) error {
	_, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), "revert", map[string]any{"outbox_id": outboxID})
	return err
}
