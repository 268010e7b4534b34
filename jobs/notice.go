package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/countersign/countersign/internal/notice"
	"github.com/countersign/countersign/internal/workflow"
)

// NoticeFanoutArgs turns one outbox event into deliveries. It is inserted in
// the transaction that writes the event; the deliveries' unique key makes a
// second run harmless.
type NoticeFanoutArgs struct {
	EventID int64 `json:"event_id"`
}

// Kind implements river.JobArgs.
func (NoticeFanoutArgs) Kind() string { return "notice_fanout" }

// NoticeFlushArgs sends what waits on one user's channel.
type NoticeFlushArgs struct {
	UserID  int64  `json:"user_id"`
	Channel string `json:"channel"`
}

// Kind implements river.JobArgs.
func (NoticeFlushArgs) Kind() string { return "notice_flush" }

// NoticeSendArgs sends one message; River's retries with backoff are the
// delivery's retries.
type NoticeSendArgs struct {
	MessageID int64 `json:"message_id"`
}

// Kind implements river.JobArgs.
func (NoticeSendArgs) Kind() string { return "notice_send" }

// InsertOpts implements river.JobArgsWithInsertOpts: the attempts are the
// dispatcher's (a failed message is recorded failed on its last one).
func (NoticeSendArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: notice.DefaultMaxAttempts}
}

// NoticeReminderArgs emits a deadline reminder for a request that still waits.
type NoticeReminderArgs struct {
	RequestID string `json:"request_id" river:"unique"`
	Reminder  string `json:"kind" river:"unique"`
}

// Kind implements river.JobArgs.
func (NoticeReminderArgs) Kind() string { return "notice_reminder" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (NoticeReminderArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
}

// NoticeFanoutWorker runs the fan-out.
type NoticeFanoutWorker struct {
	river.WorkerDefaults[NoticeFanoutArgs]
	Dispatcher *notice.Dispatcher
}

// Work implements river.Worker.
func (w *NoticeFanoutWorker) Work(ctx context.Context, job *river.Job[NoticeFanoutArgs]) error {
	return w.Dispatcher.Fanout(ctx, job.Args.EventID)
}

// NoticeFlushWorker runs a flush; one that came early waits.
type NoticeFlushWorker struct {
	river.WorkerDefaults[NoticeFlushArgs]
	Dispatcher *notice.Dispatcher
}

// Work implements river.Worker.
func (w *NoticeFlushWorker) Work(ctx context.Context, job *river.Job[NoticeFlushArgs]) error {
	wait, err := w.Dispatcher.Flush(ctx, job.Args.UserID, job.Args.Channel)
	if err != nil {
		return err
	}
	if wait > 0 {
		return river.JobSnooze(wait)
	}
	return nil
}

// NoticeSendWorker sends a message.
type NoticeSendWorker struct {
	river.WorkerDefaults[NoticeSendArgs]
	Dispatcher *notice.Dispatcher
}

// Work implements river.Worker.
func (w *NoticeSendWorker) Work(ctx context.Context, job *river.Job[NoticeSendArgs]) error {
	return w.Dispatcher.Send(ctx, job.Args.MessageID)
}

// NextRetry implements river.Worker: a mail server that refused a message
// is tried again soon, then less and less often (2 s, 4 s, … capped at 10 min).
func (w *NoticeSendWorker) NextRetry(job *river.Job[NoticeSendArgs]) time.Time {
	d := min(time.Duration(1<<min(job.Attempt, 10))*time.Second, 10*time.Minute)
	return time.Now().Add(d)
}

// NoticeReminderWorker emits deadline reminders through the engine.
type NoticeReminderWorker struct {
	river.WorkerDefaults[NoticeReminderArgs]
	Engine *workflow.Engine
}

// Work implements river.Worker.
func (w *NoticeReminderWorker) Work(ctx context.Context, job *river.Job[NoticeReminderArgs]) error {
	retryAt, err := w.Engine.Remind(ctx, job.Args.RequestID, notice.Kind(job.Args.Reminder))
	if err != nil {
		return err
	}
	if retryAt != nil {
		return river.JobSnooze(max(time.Until(*retryAt), 100*time.Millisecond))
	}
	return nil
}

// ScheduleFanout implements notice.Scheduler.
func (s *Scheduler) ScheduleFanout(ctx context.Context, tx pgx.Tx, eventID int64) error {
	_, err := s.client.InsertTx(ctx, tx, NoticeFanoutArgs{EventID: eventID}, nil)
	return err
}

// ScheduleFlush implements notice.Scheduler. A flush due now is inserted
// available: River makes any job given a time 'scheduled', and its leader
// promotes those only every few seconds, which the first message of a
// quiet period must not wait for.
func (s *Scheduler) ScheduleFlush(ctx context.Context, tx pgx.Tx, userID int64, channel string, at time.Time) error {
	var opts *river.InsertOpts
	if at.After(time.Now()) {
		opts = &river.InsertOpts{ScheduledAt: at}
	}
	_, err := s.client.InsertTx(ctx, tx, NoticeFlushArgs{UserID: userID, Channel: channel}, opts)
	return err
}

// ScheduleSend implements notice.Scheduler.
func (s *Scheduler) ScheduleSend(ctx context.Context, tx pgx.Tx, messageID int64) error {
	_, err := s.client.InsertTx(ctx, tx, NoticeSendArgs{MessageID: messageID}, nil)
	return err
}

// ScheduleReminder implements notice.Scheduler.
func (s *Scheduler) ScheduleReminder(ctx context.Context, tx pgx.Tx, requestID string, kind notice.Kind, at time.Time) error {
	_, err := s.client.InsertTx(ctx, tx, NoticeReminderArgs{RequestID: requestID, Reminder: string(kind)}, &river.InsertOpts{ScheduledAt: at})
	return err
}

var _ notice.Scheduler = (*Scheduler)(nil)
