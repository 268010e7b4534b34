package demo

import (
	"context"
	"errors"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/metrics"
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
var Colleagues = []Colleague{{"sam@example.com", vocab.RoleApprover}, {"kim@example.com", vocab.RoleApprover}, {"lee@example.com", vocab.RoleReviewer}}

// Patience is how long a request waits before a colleague decides it: long
// enough that the person trying the demo finds a full inbox.
const Patience = 5 * time.Minute

// Colleagues decide, every interval, each the oldest request it may decide
// (explicit or batched) that has waited longer than patience, through the same path as
// the console (roles, no self-approval, payload hash, audit). They approve
// most, reject some with a reason and ask for changes now and then, and
// leave about one request in five that has a deadline to it, so that
// deadlines pass too; two approvers among them complete the rules that need
// two. Which of these a request gets depends only on its id.
func DecideAsColleagues(ctx context.Context, db *pgxpool.Pool, engine *workflow.Engine, patience, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, c := range Colleagues {
			if err := decideOne(ctx, db, engine, c, patience); err != nil && ctx.Err() == nil {
				logger.Warn("demo colleague could not decide", "colleague", c.Email, "err", err)
			}
		}
		if err := flagOne(ctx, db, Colleagues[1]); err != nil && ctx.Err() == nil {
			logger.Warn("demo colleague could not flag a run", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func decideOne(ctx context.Context, db store.DBTX, engine *workflow.Engine, c Colleague, patience time.Duration) error {
	rows, err := store.RequestListInbox(ctx, db, store.InboxParams{OlderThan: patience,
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
		if verdict == "" && r.Deadline != nil {
			continue // left to its deadline
		}
		if verdict == "" {
			verdict = vocab.VerdictApprove // no deadline would ever decide it
		}
		if r.Tier == vocab.TierBatched && verdict == vocab.VerdictRequestChanges {
			verdict, reason = vocab.VerdictApprove, ""
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

// flagOne has a colleague read the newest completed runs and flag as
// unusable about one in twelve (which ones, and why, depends only on the run
// id), at most one a tick, so that the dashboard's unusable chart has data.
func flagOne(ctx context.Context, db *pgxpool.Pool, c Colleague) error {
	runs, err := store.RunList(ctx, db, store.RunListParams{Status: string(vocab.RunCompleted), Limit: 20})
	if err != nil {
		return err
	}
	for _, r := range runs {
		category, reason, ok := unusableVerdict(r.ID)
		if !ok {
			continue
		}
		_, err := metrics.FlagUnusable(ctx, db, metrics.Flag{RunID: r.ID, Category: category, Reason: reason, Actor: c.Email})
		if errors.Is(err, metrics.ErrAlreadyFlagged) {
			continue
		}
		return err
	}
	return nil
}

// unusableVerdict is whether a colleague finds a completed run's output
// unusable, and why.
func unusableVerdict(runID string) (vocab.UnusableCategory, string, bool) {
	h := fnv.New32a()
	h.Write([]byte(runID))
	n := h.Sum32()
	if n%12 != 0 {
		return "", "", false
	}
	reasons := []struct {
		c vocab.UnusableCategory
		r string
	}{
		{vocab.UnusableIncorrect, "The summary names the wrong order."},
		{vocab.UnusableIncomplete, "The reply does not answer the customer's second question."},
		{vocab.UnusableFormat, "The text came back half in English, half in French."},
	}
	x := reasons[(n/12)%uint32(len(reasons))]
	return x.c, x.r, true
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
