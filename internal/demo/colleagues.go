package demo

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// Colleague is a demo reviewer: a user account the demo decides as, so that
// a demo left running has human decisions to show (their times, verdicts,
// rubber stamps) while the person trying it decides what they like.
type Colleague struct {
	Email string
	Role  vocab.Role
}

// Colleagues are the demo's simulated reviewers; `countersign demo` creates
// their accounts.
var Colleagues = []Colleague{{"sam@example.com", vocab.RoleApprover}, {"lee@example.com", vocab.RoleReviewer}}

// Patience is how long a request waits before a colleague decides it: long
// enough that the person trying the demo finds a full inbox.
const Patience = 5 * time.Minute

// Colleagues decide, every interval, each the oldest explicit request it
// may decide that has waited longer than patience, through the same path as
// the console (roles, no self-approval, payload hash, audit). They approve
// most, reject some with a reason and ask for changes now and then, and
// leave about one request in five to its deadline, so that deadlines pass
// too. Which of these a request gets depends only on its id.
func DecideAsColleagues(ctx context.Context, db store.DBTX, engine *workflow.Engine, patience, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, c := range Colleagues {
			if err := decideOne(ctx, db, engine, c, patience); err != nil && ctx.Err() == nil {
				logger.Warn("demo colleague could not decide", "colleague", c.Email, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func decideOne(ctx context.Context, db store.DBTX, engine *workflow.Engine, c Colleague, patience time.Duration) error {
	rows, err := store.RequestListInbox(ctx, db, store.InboxParams{Tier: string(vocab.TierExplicit), OlderThan: patience,
		Actor: c.Email, ActorRole: c.Role, CanDecide: true, Limit: 20, Now: time.Now()})
	if err != nil {
		return err
	}
	// One decision per colleague and tick; a request refused (decided by
	// someone a moment ago, say) passes the turn to the next.
	var errs []error
	for _, row := range rows {
		r := row.Request
		verdict, reason := colleagueVerdict(r.ID)
		if verdict == "" {
			continue // left to its deadline
		}
		_, err := engine.Decide(ctx, workflow.DecideParams{RequestID: r.ID, Verdict: verdict, Reason: reason, PayloadHash: r.PayloadHash,
			Actor: workflow.Actor{Name: c.Email, Roles: []vocab.Role{c.Role}}})
		if err == nil || ctx.Err() != nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// colleagueVerdict is what a colleague does with a request: nothing (the
// empty verdict) for one in five, then approve four in five of the rest,
// reject one in ten and request changes for the others.
func colleagueVerdict(requestID string) (vocab.Verdict, string) {
	h := fnv.New32a()
	h.Write([]byte(requestID))
	switch n := h.Sum32() % 100; {
	case n < 20:
		return "", ""
	case n < 84:
		return vocab.VerdictApprove, ""
	case n < 92:
		return vocab.VerdictReject, "Not what the customer asked for."
	default:
		return vocab.VerdictRequestChanges, "Say it more simply, and mention the order number."
	}
}

// LeftToDeadline reports whether the colleagues leave the request with this
// id to its deadline.
func LeftToDeadline(requestID string) bool {
	v, _ := colleagueVerdict(requestID)
	return v == ""
}
