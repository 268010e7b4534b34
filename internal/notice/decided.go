package notice

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// Decided is a recorded decision, as the copies of its request posted to
// chat (Slack) must show it.
type Decided struct {
	RequestID string
	Verdict   vocab.Verdict
	Actor     string    // the user's email, or policy:<rule>
	Channel   string    // where it was decided when not the console or the API ("slack")
	At        time.Time // when
	Expired   bool      // decided by the policy because the deadline passed
}

// Outcome is the line that replaces the request's buttons: who decided, how,
// where and when ("Approved by a@b.c in Slack at 2026-11-22 01:57 UTC"), or
// that the request expired and what the policy did.
func (d Decided) Outcome() string {
	at := d.At.UTC().Format("2006-01-02 15:04 UTC")
	if d.Expired {
		return clip(fmt.Sprintf("Expired at %s: %s by %s", at, d.Verdict.Label(), d.Actor), 500)
	}
	label := d.Verdict.Label()
	if label != "" {
		label = strings.ToUpper(label[:1]) + label[1:]
	}
	where := ""
	if d.Channel == "slack" {
		where = " in Slack"
	}
	return clip(fmt.Sprintf("%s by %s%s at %s", label, d.Actor, where, at), 500)
}

// Decided records, in the decision's transaction, that every chat copy of
// the request must now show d (its buttons replaced by d.Outcome()), and
// schedules the job that updates them. When no copy was posted (no Slack, or
// a request never announced there) it writes nothing, so that a decision pays
// one indexed read for it. A rolled-back decision updates nothing; a
// committed one always will, a crash before the update included.
func (o *Outbox) Decided(ctx context.Context, tx pgx.Tx, d Decided) error {
	if o == nil {
		return nil
	}
	n, err := store.SlackUpdatesInsert(ctx, tx, d.RequestID, d.Outcome())
	if err != nil || n == 0 {
		return err
	}
	if err := o.scheduler.ScheduleChatUpdate(ctx, tx, d.RequestID); err != nil {
		return fmt.Errorf("schedule chat update of request %s: %w", d.RequestID, err)
	}
	return nil
}
