package jobs

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/countersign/countersign/internal/notice/slack"
)

// ChatUpdateMaxAttempts bounds the tries at updating a decided request's
// chat copies (over about an hour with NextRetry's backoff; a copy still
// not updated after the last keeps its pending row and its error).
const ChatUpdateMaxAttempts = 12

// ChatUpdateArgs updates every chat copy of a decided request to show the
// decision. It is inserted in the decision's transaction with one
// slack_updates row per copy; the rows say what is left to do, so a job run
// again (a retry, a crash after commit) updates only what was not.
type ChatUpdateArgs struct {
	RequestID string `json:"request_id"`
}

// Kind implements river.JobArgs.
func (ChatUpdateArgs) Kind() string { return "chat_update" }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (ChatUpdateArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: ChatUpdateMaxAttempts}
}

// ChatUpdateWorker updates the copies through Slack's chat.update. Slack is
// nil when the process has no bot token: the job then does nothing (the
// copies were posted by a process that had one, and none can be updated
// without it).
type ChatUpdateWorker struct {
	river.WorkerDefaults[ChatUpdateArgs]
	Slack *slack.Client
}

// Work implements river.Worker.
func (w *ChatUpdateWorker) Work(ctx context.Context, job *river.Job[ChatUpdateArgs]) error {
	if w.Slack == nil {
		return nil
	}
	return w.Slack.UpdateCopies(ctx, job.Args.RequestID)
}

// NextRetry implements river.Worker: 2 s, 4 s, 8 s … capped at one hour, so
// that Slack's rate limit or a short outage delays the update, not loses it.
func (w *ChatUpdateWorker) NextRetry(job *river.Job[ChatUpdateArgs]) time.Time {
	return time.Now().Add(min(time.Duration(1<<min(job.Attempt, 12))*time.Second, time.Hour))
}

// ScheduleChatUpdate implements notice.Scheduler.
func (s *Scheduler) ScheduleChatUpdate(ctx context.Context, tx pgx.Tx, requestID string) error {
	_, err := s.client.InsertTx(ctx, tx, ChatUpdateArgs{RequestID: requestID}, nil)
	return err
}
