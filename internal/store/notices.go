package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/store/dbsqlc"
	"github.com/countersign/countersign/vocab"
)

// NoticeEvent is a row of the notification outbox (internal/notice): what
// happened and whom it reaches.
type NoticeEvent struct {
	ID          int64
	Kind        string
	RequestID   *string
	RunID       *string
	BatchID     *string
	Roles       []vocab.Role
	UserIDs     []int64
	Subscribers bool
	Urgent      bool
	Detail      string
	CreatedAt   time.Time
}

func noticeEventFromInternal(e *dbsqlc.NoticeEvent) *NoticeEvent {
	return &NoticeEvent{ID: e.ID, Kind: e.Kind, RequestID: e.RequestID, RunID: e.RunID, BatchID: e.BatchID,
		Roles: roles(e.Roles), UserIDs: e.UserIds, Subscribers: e.Subscribers, Urgent: e.Urgent, Detail: e.Detail,
		CreatedAt: e.CreatedAt}
}

// NoticeEventInsert writes an event to the outbox.
func NoticeEventInsert(ctx context.Context, db DBTX, e *NoticeEvent) (*NoticeEvent, error) {
	row, err := queries.NoticeEventInsert(ctx, db, dbsqlc.NoticeEventInsertParams{Kind: e.Kind, RequestID: e.RequestID,
		RunID: e.RunID, BatchID: e.BatchID, Roles: nonNil(roleNames(e.Roles)), UserIds: nonNil(e.UserIDs),
		Subscribers: e.Subscribers, Urgent: e.Urgent, Detail: e.Detail})
	if err != nil {
		return nil, fmt.Errorf("insert notice event: %w", interpret(err))
	}
	return noticeEventFromInternal(row), nil
}

// NoticeEventGet returns an event, or ErrNotFound.
func NoticeEventGet(ctx context.Context, db DBTX, id int64) (*NoticeEvent, error) {
	row, err := queries.NoticeEventGet(ctx, db, id)
	if err != nil {
		return nil, interpret(err)
	}
	return noticeEventFromInternal(row), nil
}

// NoticePrefs are the notification preferences that apply to a user: their
// own, or their role's defaults. Quiet hours are minutes after midnight in
// TimeZone; QuietStart == QuietEnd means none.
type NoticePrefs struct {
	Channels   []string
	Events     []string
	QuietStart int
	QuietEnd   int
	TimeZone   string
}

// NoticeRecipient is a user an event reaches, with the preferences that
// apply. Builtin is true when neither the user nor the role has any.
type NoticeRecipient struct {
	UserID  int64
	Email   string
	Name    string
	Role    vocab.Role
	Builtin bool
	Prefs   NoticePrefs
}

// NoticeRecipients lists the active users event e reaches: by role, by id,
// or, for an event to subscribers, whose preferences name its kind.
func NoticeRecipients(ctx context.Context, db DBTX, e *NoticeEvent) ([]NoticeRecipient, error) {
	rows, err := queries.NoticeRecipients(ctx, db, dbsqlc.NoticeRecipientsParams{Roles: nonNil(roleNames(e.Roles)),
		UserIds: nonNil(e.UserIDs), Subscribers: e.Subscribers, Kind: e.Kind})
	if err != nil {
		return nil, fmt.Errorf("list notice recipients: %w", interpret(err))
	}
	out := make([]NoticeRecipient, len(rows))
	for i, r := range rows {
		out[i] = NoticeRecipient{UserID: r.ID, Email: r.Email, Name: r.Name, Role: vocab.Role(r.Role), Builtin: r.Builtin,
			Prefs: NoticePrefs{Channels: r.Channels, Events: r.Events, QuietStart: r.QuietStart, QuietEnd: r.QuietEnd, TimeZone: r.TimeZone}}
	}
	return out, nil
}

// NoticeDeliveryInsert records a delivery of event to user on channel and
// reports whether it is new: a second insert of the same triple does nothing.
func NoticeDeliveryInsert(ctx context.Context, db DBTX, eventID, userID int64, channel string, notBefore time.Time) (bool, error) {
	_, err := queries.NoticeDeliveryInsert(ctx, db, dbsqlc.NoticeDeliveryInsertParams{EventID: eventID, UserID: userID,
		Channel: channel, NotBefore: notBefore})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("insert notice delivery: %w", interpret(err))
	}
	return true, nil
}

// NoticeOutlet is one user's channel: when it last sent and when its next
// flush is due (nil: none is scheduled).
type NoticeOutlet struct {
	UserID     int64
	Channel    string
	LastSentAt *time.Time
	FlushAt    *time.Time
}

// NoticeOutletLock creates the outlet if needed and locks it for the
// transaction, which serializes the fan-outs and flushes of one outlet.
func NoticeOutletLock(ctx context.Context, db DBTX, userID int64, channel string) (*NoticeOutlet, error) {
	if err := queries.NoticeOutletEnsure(ctx, db, dbsqlc.NoticeOutletEnsureParams{UserID: userID, Channel: channel}); err != nil {
		return nil, fmt.Errorf("create notice outlet: %w", interpret(err))
	}
	o, err := queries.NoticeOutletLock(ctx, db, dbsqlc.NoticeOutletLockParams{UserID: userID, Channel: channel})
	if err != nil {
		return nil, fmt.Errorf("lock notice outlet: %w", interpret(err))
	}
	return &NoticeOutlet{UserID: o.UserID, Channel: o.Channel, LastSentAt: o.LastSentAt, FlushAt: o.FlushAt}, nil
}

// NoticeOutletSetFlush records when the outlet's next flush is due.
func NoticeOutletSetFlush(ctx context.Context, db DBTX, userID int64, channel string, at *time.Time) error {
	err := queries.NoticeOutletSetFlush(ctx, db, dbsqlc.NoticeOutletSetFlushParams{FlushAt: at, UserID: userID, Channel: channel})
	if err != nil {
		return fmt.Errorf("set notice flush: %w", interpret(err))
	}
	return nil
}

// NoticeOutletSent records that the outlet sent at sentAt and its next flush (nil: none).
func NoticeOutletSent(ctx context.Context, db DBTX, userID int64, channel string, sentAt time.Time, next *time.Time) error {
	err := queries.NoticeOutletSent(ctx, db, dbsqlc.NoticeOutletSentParams{SentAt: &sentAt, FlushAt: next, UserID: userID, Channel: channel})
	if err != nil {
		return fmt.Errorf("mark notice outlet sent: %w", interpret(err))
	}
	return nil
}

// NoticeDeliveriesDue locks and returns the ids of the outlet's deliveries
// that wait for a message and may go at now.
func NoticeDeliveriesDue(ctx context.Context, db DBTX, userID int64, channel string, now time.Time) ([]int64, error) {
	rows, err := queries.NoticeDeliveriesDue(ctx, db, dbsqlc.NoticeDeliveriesDueParams{UserID: userID, Channel: channel, Now: now})
	if err != nil {
		return nil, fmt.Errorf("list due deliveries: %w", interpret(err))
	}
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	return ids, nil
}

// NoticeDeliveryNextWaiting returns when the outlet's earliest delivery still
// waiting may go, or nil when none waits.
func NoticeDeliveryNextWaiting(ctx context.Context, db DBTX, userID int64, channel string) (*time.Time, error) {
	at, err := queries.NoticeDeliveryNextWaiting(ctx, db, dbsqlc.NoticeDeliveryNextWaitingParams{UserID: userID, Channel: channel})
	if err != nil {
		return nil, fmt.Errorf("next waiting delivery: %w", interpret(err))
	}
	if len(at) == 0 {
		return nil, nil
	}
	return &at[0], nil
}

// NoticeMessage is one message to one user on one channel, carrying one
// delivery or a digest of several.
type NoticeMessage struct {
	ID        int64
	UserID    int64
	Email     string // in listings
	Channel   string
	Status    string // pending, sent, failed
	Digest    bool
	Items     int // in listings: how many deliveries it carries
	Attempts  int
	LastError string
	CreatedAt time.Time
	SentAt    *time.Time
}

func noticeMessageFromInternal(m *dbsqlc.NoticeMessage) *NoticeMessage {
	return &NoticeMessage{ID: m.ID, UserID: m.UserID, Channel: m.Channel, Status: m.Status, Digest: m.Digest,
		Attempts: m.Attempts, LastError: m.LastError, CreatedAt: m.CreatedAt, SentAt: m.SentAt}
}

// NoticeMessageCreate makes a message of the given deliveries.
func NoticeMessageCreate(ctx context.Context, db DBTX, userID int64, channel string, deliveries []int64) (*NoticeMessage, error) {
	m, err := queries.NoticeMessageInsert(ctx, db, dbsqlc.NoticeMessageInsertParams{UserID: userID, Channel: channel,
		Digest: len(deliveries) > 1})
	if err != nil {
		return nil, fmt.Errorf("insert notice message: %w", interpret(err))
	}
	if err := queries.NoticeDeliveriesAttach(ctx, db, dbsqlc.NoticeDeliveriesAttachParams{MessageID: &m.ID, Ids: deliveries}); err != nil {
		return nil, fmt.Errorf("attach deliveries: %w", interpret(err))
	}
	return noticeMessageFromInternal(m), nil
}

// NoticeMessageGet returns a message, or ErrNotFound.
func NoticeMessageGet(ctx context.Context, db DBTX, id int64) (*NoticeMessage, error) {
	m, err := queries.NoticeMessageGet(ctx, db, id)
	if err != nil {
		return nil, interpret(err)
	}
	return noticeMessageFromInternal(m), nil
}

// NoticeMessageEvents returns the events a message carries, oldest first.
func NoticeMessageEvents(ctx context.Context, db DBTX, messageID int64) ([]*NoticeEvent, error) {
	rows, err := queries.NoticeMessageEvents(ctx, db, &messageID)
	if err != nil {
		return nil, fmt.Errorf("list message events: %w", interpret(err))
	}
	return convertAll(rows, noticeEventFromInternal), nil
}

// NoticeMessageRecord records one attempt to send a message, with status
// sent, failed (for good) or pending (to be tried again), and errText.
func NoticeMessageRecord(ctx context.Context, db DBTX, id int64, status, errText string) (*NoticeMessage, error) {
	m, err := queries.NoticeMessageRecord(ctx, db, dbsqlc.NoticeMessageRecordParams{Status: status, Error: clip(errText, 2000), ID: id})
	if err != nil {
		return nil, fmt.Errorf("record notice attempt: %w", interpret(err))
	}
	return &NoticeMessage{ID: m.ID, UserID: m.UserID, Channel: m.Channel, Status: m.Status, Digest: m.Digest,
		Attempts: m.Attempts, LastError: m.LastError, CreatedAt: m.CreatedAt, SentAt: m.SentAt}, nil
}

// NoticeMessageRetry makes a failed message pending again. Returns
// ErrNotFound when no failed message has that id.
func NoticeMessageRetry(ctx context.Context, db DBTX, id int64) error {
	return oneRow(queries.NoticeMessageRetry(ctx, db, id))
}

// NoticeMessageList lists messages newest first, before beforeID when it is
// not 0, only the failed ones when failed is set, at most limit.
func NoticeMessageList(ctx context.Context, db DBTX, failed bool, beforeID int64, limit int) ([]*NoticeMessage, error) {
	rows, err := queries.NoticeMessageList(ctx, db, dbsqlc.NoticeMessageListParams{Failed: failed, BeforeID: beforeID, MaxRows: int32(limit)})
	if err != nil {
		return nil, fmt.Errorf("list notice messages: %w", interpret(err))
	}
	out := make([]*NoticeMessage, len(rows))
	for i, m := range rows {
		out[i] = &NoticeMessage{ID: m.ID, UserID: m.UserID, Email: m.Email, Channel: m.Channel, Status: m.Status,
			Digest: m.Digest, Items: m.Items, Attempts: m.Attempts, LastError: m.LastError, CreatedAt: m.CreatedAt, SentAt: m.SentAt}
	}
	return out, nil
}

// NoticeAttempt is one recorded try at sending a message.
type NoticeAttempt struct {
	Attempt int
	OK      bool
	Error   string
	At      time.Time
}

// NoticeAttemptList lists a message's attempts in order.
func NoticeAttemptList(ctx context.Context, db DBTX, messageID int64) ([]NoticeAttempt, error) {
	rows, err := queries.NoticeAttemptList(ctx, db, messageID)
	if err != nil {
		return nil, fmt.Errorf("list notice attempts: %w", interpret(err))
	}
	out := make([]NoticeAttempt, len(rows))
	for i, a := range rows {
		out[i] = NoticeAttempt{Attempt: a.Attempt, OK: a.Ok, Error: a.Error, At: a.At}
	}
	return out, nil
}

// NoticePreferenceGet returns a user's own preferences, or ErrNotFound when
// the user has none (their role's defaults apply).
func NoticePreferenceGet(ctx context.Context, db DBTX, userID int64) (*NoticePrefs, error) {
	p, err := queries.NoticePreferenceGet(ctx, db, userID)
	if err != nil {
		return nil, interpret(err)
	}
	return &NoticePrefs{Channels: p.Channels, Events: p.Events, QuietStart: p.QuietStart, QuietEnd: p.QuietEnd, TimeZone: p.TimeZone}, nil
}

// NoticePreferenceSet stores a user's own preferences.
func NoticePreferenceSet(ctx context.Context, db DBTX, userID int64, p NoticePrefs) error {
	err := queries.NoticePreferenceSet(ctx, db, dbsqlc.NoticePreferenceSetParams{UserID: userID, Channels: nonNil(p.Channels),
		Events: nonNil(p.Events), QuietStart: p.QuietStart, QuietEnd: p.QuietEnd, TimeZone: p.TimeZone})
	if err != nil {
		return fmt.Errorf("store notice preferences: %w", interpret(err))
	}
	return nil
}

// NoticePreferenceDelete removes a user's own preferences: the role's defaults apply again.
func NoticePreferenceDelete(ctx context.Context, db DBTX, userID int64) error {
	if err := queries.NoticePreferenceDelete(ctx, db, userID); err != nil {
		return fmt.Errorf("delete notice preferences: %w", interpret(err))
	}
	return nil
}

// NoticeRoleDefaultList returns the defaults set per role.
func NoticeRoleDefaultList(ctx context.Context, db DBTX) (map[vocab.Role]NoticePrefs, error) {
	rows, err := queries.NoticeRoleDefaultList(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list notice defaults: %w", interpret(err))
	}
	out := make(map[vocab.Role]NoticePrefs, len(rows))
	for _, r := range rows {
		out[vocab.Role(r.Role)] = NoticePrefs{Channels: r.Channels, Events: r.Events, QuietStart: r.QuietStart, QuietEnd: r.QuietEnd, TimeZone: r.TimeZone}
	}
	return out, nil
}

// NoticeRoleDefaultSet stores a role's default preferences.
func NoticeRoleDefaultSet(ctx context.Context, db DBTX, role vocab.Role, p NoticePrefs) error {
	err := queries.NoticeRoleDefaultSet(ctx, db, dbsqlc.NoticeRoleDefaultSetParams{Role: string(role), Channels: nonNil(p.Channels),
		Events: nonNil(p.Events), QuietStart: p.QuietStart, QuietEnd: p.QuietEnd, TimeZone: p.TimeZone})
	if err != nil {
		return fmt.Errorf("store notice defaults: %w", interpret(err))
	}
	return nil
}

// nonNil turns a nil slice into an empty one: the columns are NOT NULL arrays.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// clip cuts s to at most n bytes at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// NoticeSubscribed reports whether any active user's preferences (their own,
// else their role's) name kind.
func NoticeSubscribed(ctx context.Context, db DBTX, kind string) (bool, error) {
	ok, err := queries.NoticeSubscribed(ctx, db, kind)
	if err != nil {
		return false, fmt.Errorf("notice subscribers: %w", interpret(err))
	}
	return ok, nil
}
