package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store/dbsqlc"
	"github.com/countersign/countersign/vocab"
)

// SlackMessage is a Slack message posted with decision buttons: where it is
// (channel, ts), which requests it shows, and its blocks as last posted.
type SlackMessage struct {
	Channel    string
	TS         string
	RequestIDs []string
	Blocks     json.RawMessage
	Text       string
}

// SlackMessageInsert records a posted message (a second record of the same
// message is ignored).
func SlackMessageInsert(ctx context.Context, db DBTX, m SlackMessage) error {
	err := queries.SlackMessageInsert(ctx, db, dbsqlc.SlackMessageInsertParams{Channel: m.Channel, Ts: m.TS,
		RequestIds: m.RequestIDs, Blocks: m.Blocks, Text: m.Text})
	if err != nil {
		return fmt.Errorf("record slack message %s/%s: %w", m.Channel, m.TS, interpret(err))
	}
	return nil
}

// SlackMessageSetBlocks stores a message's blocks as updated.
func SlackMessageSetBlocks(ctx context.Context, db DBTX, m SlackMessage) error {
	err := queries.SlackMessageSetBlocks(ctx, db, dbsqlc.SlackMessageSetBlocksParams{Channel: m.Channel, Ts: m.TS, Blocks: m.Blocks, Text: m.Text})
	if err != nil {
		return fmt.Errorf("update slack message %s/%s: %w", m.Channel, m.TS, interpret(err))
	}
	return nil
}

// SlackUpdate is what a decision owes one Slack copy of its request: the
// message, locked, as last posted, and the outcome to show in place of the
// request's buttons.
type SlackUpdate struct {
	ID        int64
	RequestID string
	Outcome   string
	Message   SlackMessage
}

// SlackUpdatesInsert records, in the decision's transaction, that every
// recorded message showing request id must show outcome. It returns how many
// copies there are (0: nothing to do, and no job is needed).
func SlackUpdatesInsert(ctx context.Context, db DBTX, requestID, outcome string) (int64, error) {
	n, err := queries.SlackUpdatesInsert(ctx, db, dbsqlc.SlackUpdatesInsertParams{RequestID: requestID, Outcome: outcome})
	if err != nil {
		return 0, fmt.Errorf("record slack updates of request %s: %w", requestID, interpret(err))
	}
	return n, nil
}

// SlackUpdatesPending lists the ids of request id's copies not yet updated.
func SlackUpdatesPending(ctx context.Context, db DBTX, requestID string) ([]int64, error) {
	ids, err := queries.SlackUpdatesPending(ctx, db, requestID)
	if err != nil {
		return nil, fmt.Errorf("pending slack updates of request %s: %w", requestID, interpret(err))
	}
	return ids, nil
}

// SlackUpdateLock returns update id with its message, both locked until tx
// ends. Returns ErrNotFound when it is done already (or gone).
func SlackUpdateLock(ctx context.Context, db DBTX, id int64) (*SlackUpdate, error) {
	r, err := queries.SlackUpdateLock(ctx, db, id)
	if err != nil {
		return nil, interpret(err)
	}
	return &SlackUpdate{ID: r.ID, RequestID: r.RequestID, Outcome: r.Outcome,
		Message: SlackMessage{Channel: r.Channel, TS: r.Ts, Blocks: r.Blocks, Text: r.Text}}, nil
}

// SlackUpdateDone marks update id done: its copy shows the outcome, or, with
// a non-empty lastErr, Slack refused it for good. Returns ErrNotFound when it
// was done already.
func SlackUpdateDone(ctx context.Context, db DBTX, id int64, lastErr string) error {
	if err := oneRow(queries.SlackUpdateDone(ctx, db, dbsqlc.SlackUpdateDoneParams{ID: id, LastError: lastErr})); err != nil {
		return fmt.Errorf("slack update %d done: %w", id, err)
	}
	return nil
}

// SlackUpdateFailed counts a failed attempt at update id (it stays pending).
func SlackUpdateFailed(ctx context.Context, db DBTX, id int64, lastErr string) error {
	if err := queries.SlackUpdateFailed(ctx, db, dbsqlc.SlackUpdateFailedParams{ID: id, LastError: lastErr}); err != nil {
		return fmt.Errorf("slack update %d failed: %w", id, interpret(err))
	}
	return nil
}

// SlackDecided is a decided request, as a copy posted after its decision
// must show it.
type SlackDecided struct {
	RequestID string
	Deadline  *time.Time
	Verdict   vocab.Verdict
	Actor     string
	At        time.Time
	Channel   string // where it was decided, as its audit event says ("slack"), or ""
}

// SlackDecidedAmong returns those of the requests that are decided. It first
// waits, in tx, for a decision of any of them that is being committed, so
// that a decision either saw a message recorded before (and owes it an
// update) or is returned here.
func SlackDecidedAmong(ctx context.Context, tx pgx.Tx, requestIDs []string) ([]SlackDecided, error) {
	if err := queries.SlackRequestsLockShared(ctx, tx, requestIDs); err != nil {
		return nil, fmt.Errorf("lock requests: %w", interpret(err))
	}
	rows, err := queries.SlackDecidedAmong(ctx, tx, requestIDs)
	if err != nil {
		return nil, fmt.Errorf("decided requests: %w", interpret(err))
	}
	out := make([]SlackDecided, 0, len(rows))
	for _, r := range rows {
		out = append(out, SlackDecided{RequestID: r.ID, Deadline: r.Deadline, Verdict: vocab.Verdict(r.Verdict), Actor: r.Actor,
			At: r.CreatedAt, Channel: r.Channel})
	}
	return out, nil
}

// SlackUpdateInsert records that one copy (m) must show outcome in place of
// request id's buttons. It reports whether the row is new.
func SlackUpdateInsert(ctx context.Context, db DBTX, requestID string, m SlackMessage, outcome string) (bool, error) {
	n, err := queries.SlackUpdateInsert(ctx, db, dbsqlc.SlackUpdateInsertParams{RequestID: requestID, Channel: m.Channel, Ts: m.TS, Outcome: outcome})
	if err != nil {
		return false, fmt.Errorf("record slack update of request %s: %w", requestID, interpret(err))
	}
	return n > 0, nil
}
