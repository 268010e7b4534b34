package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store"
)

// gone lists the Web API errors after which a message can never be
// updated: retrying would only fail again.
var gone = []string{"message_not_found", "channel_not_found", "cant_update_message", "edit_window_closed",
	"is_archived", "msg_too_long", "invalid_blocks", "not_in_channel"}

// UpdateCopies updates every copy of request id still owed an update
// (store.SlackUpdatesInsert, written by the decision): in each, the request's
// buttons are replaced by the decision's outcome (chat.update), and the copy
// is marked done in the same transaction that held its message locked, so
// that two decisions shown in one digest do not undo each other and a copy
// is updated once. A copy Slack refuses for good (deleted, archived) is
// marked done with the error; any other failure is counted and returned, after
// every copy was tried, so that the job tries the rest again later.
func (c *Client) UpdateCopies(ctx context.Context, requestID string) error {
	if c.cfg.BotToken == "" {
		return nil // an incoming webhook's messages cannot be updated, and none were recorded
	}
	ids, err := store.SlackUpdatesPending(ctx, c.pool, requestID)
	if err != nil {
		return err
	}
	var errs error
	for _, id := range ids {
		if err := c.updateCopy(ctx, id); err != nil {
			errs = errors.Join(errs, err)
			if ferr := store.SlackUpdateFailed(context.WithoutCancel(ctx), c.pool, id, clip(err.Error(), 500)); ferr != nil {
				errs = errors.Join(errs, ferr)
			}
		}
	}
	return errs
}

func (c *Client) updateCopy(ctx context.Context, id int64) error {
	return store.WithTx(ctx, c.pool, func(ctx context.Context, tx pgx.Tx) error {
		u, err := store.SlackUpdateLock(ctx, tx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil // done meanwhile
		} else if err != nil {
			return err
		}
		var blocks []Block
		if err := json.Unmarshal(u.Message.Blocks, &blocks); err != nil {
			return fmt.Errorf("slack message %s/%s: %w", u.Message.Channel, u.Message.TS, err)
		}
		blocks = markDecided(blocks, u.RequestID, u.Outcome)
		err = c.API(ctx, "chat.update", map[string]any{"channel": u.Message.Channel, "ts": u.Message.TS, "text": u.Message.Text,
			"blocks": blocks, "parse": "none"}, nil)
		var apiErr *APIError
		if errors.As(err, &apiErr) && slices.Contains(gone, apiErr.Code) {
			c.logger.Warn("slack message cannot be updated", "channel", u.Message.Channel, "ts", u.Message.TS, "err", err)
			return store.SlackUpdateDone(ctx, tx, id, clip(err.Error(), 500))
		} else if err != nil {
			return err
		}
		raw, err := json.Marshal(blocks)
		if err != nil {
			return fmt.Errorf("slack blocks: %w", err)
		}
		u.Message.Blocks = raw
		if err := store.SlackMessageSetBlocks(ctx, tx, u.Message); err != nil {
			return err
		}
		return store.SlackUpdateDone(ctx, tx, id, "")
	})
}
