package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/countersign/countersign/internal/store/dbsqlc"
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

// SlackMessagesForRequest returns, locked, every message that shows request id.
func SlackMessagesForRequest(ctx context.Context, db DBTX, id string) ([]*SlackMessage, error) {
	rows, err := queries.SlackMessagesForRequest(ctx, db, id)
	if err != nil {
		return nil, fmt.Errorf("slack messages of request %s: %w", id, interpret(err))
	}
	out := make([]*SlackMessage, 0, len(rows))
	for _, r := range rows {
		out = append(out, &SlackMessage{Channel: r.Channel, TS: r.Ts, RequestIDs: r.RequestIds, Blocks: r.Blocks, Text: r.Text})
	}
	return out, nil
}

// SlackMessageSetBlocks stores a message's blocks as updated.
func SlackMessageSetBlocks(ctx context.Context, db DBTX, m SlackMessage) error {
	err := queries.SlackMessageSetBlocks(ctx, db, dbsqlc.SlackMessageSetBlocksParams{Channel: m.Channel, Ts: m.TS, Blocks: m.Blocks, Text: m.Text})
	if err != nil {
		return fmt.Errorf("update slack message %s/%s: %w", m.Channel, m.TS, interpret(err))
	}
	return nil
}
