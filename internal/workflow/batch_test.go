package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/jobs"
	"github.com/countersign/countersign/vocab"
)

const batchPolicy = `version: 1
rules:
  - name: tags
    when: action.kind == "ticket.tag"
    tier: batched
    deadline: 1h
    on_timeout: approve
    batch: {group_by: [workflow, action.kind, action.params.team], max_size: 3, max_wait: 10m}
  - name: bulk
    when: action.kind == "ticket.bulk"
    tier: batched
    batch: {group_by: [action.kind], max_size: 1000, max_wait: 1h}
  - name: refunds
    when: action.kind == "refund" && action.params.escalate == true
    tier: explicit
    deadline: 30m
    on_timeout: escalate
    escalate_to: [admin]
  - name: refunds-reject
    when: action.kind == "refund"
    tier: explicit
    deadline: 30m
    on_timeout: reject
`

type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

type tagIn struct {
	Kind     string
	Team     string
	Escalate bool
}

func tagger(applied *atomic.Int32) func(*workflow.Registry, *ai.Offline) {
	return func(r *workflow.Registry, _ *ai.Offline) {
		workflow.Register(r, "tagger", func(ctx context.Context, in tagIn) (string, error) {
			d, err := workflow.RequestApproval(ctx, workflow.Action{Kind: in.Kind, Summary: "Tag for " + in.Team,
				Params: map[string]any{"team": in.Team, "tag": "urgent", "escalate": in.Escalate}})
			if err != nil {
				return "", err
			}
			return workflow.Effect(ctx, "apply", func(ctx context.Context, ec workflow.EffectContext) (string, error) {
				applied.Add(1)
				_, err := store.OutboxInsert(ctx, ec.Tx, ec.Key, workflow.RunID(ctx), in.Kind, d.Params)
				return string(d.Verdict), err
			})
		})
	}
}

type batchBundle struct {
	*testapp.Bundle
	clock   *clock
	applied *atomic.Int32
}

func startBatches(t *testing.T) *batchBundle {
	t.Helper()
	c := &clock{}
	var applied atomic.Int32
	b := testapp.Start(t, testapp.Options{Register: tagger(&applied), Now: c.Now})
	_, err := policystore.Apply(context.Background(), b.Pool, []byte(batchPolicy), "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	return &batchBundle{b, c, &applied}
}

func (b *batchBundle) startTag(t *testing.T, key string, in tagIn) (*store.Run, *store.Request) {
	t.Helper()
	raw, _ := json.Marshal(in)
	run, _, err := b.Engine.Start(context.Background(), workflow.StartParams{Workflow: "tagger", BusinessKey: key, Input: raw, StartedBy: "agent"})
	require.NoError(t, err)
	run = b.WaitRun(t, run.ID, vocab.RunWaitingHuman)
	return run, b.PendingRequest(t, run.ID)
}

func shown(items []*store.Request) []workflow.ItemRef {
	out := make([]workflow.ItemRef, len(items))
	for i, r := range items {
		out[i] = workflow.ItemRef{ID: r.ID, PayloadHash: r.PayloadHash}
	}
	return out
}

var boss = workflow.Actor{Name: "boss@example.com", Roles: []vocab.Role{"reviewer"}}

func TestBatchGroupingAndClosing(t *testing.T) {
	t.Parallel()
	b := startBatches(t)
	ctx := context.Background()
	var reqs []*store.Request
	for i := range 4 {
		_, r := b.startTag(t, fmt.Sprint("a", i), tagIn{Kind: "ticket.tag", Team: "a"})
		reqs = append(reqs, r)
	}
	_, other := b.startTag(t, "b0", tagIn{Kind: "ticket.tag", Team: "b"})

	first, err := store.BatchGet(ctx, b.Pool, *reqs[0].BatchID)
	require.NoError(t, err)
	require.Equal(t, vocab.BatchReady, first.Status, "closed at max_size 3")
	require.Equal(t, 3, first.Size)
	require.Equal(t, *reqs[0].BatchID, *reqs[2].BatchID)
	require.NotEqual(t, *reqs[0].BatchID, *reqs[3].BatchID, "the fourth opened a new batch")
	require.NotEqual(t, *reqs[3].BatchID, *other.BatchID, "another team is another group")
	second, err := store.BatchGet(ctx, b.Pool, *reqs[3].BatchID)
	require.NoError(t, err)
	require.Equal(t, vocab.BatchOpen, second.Status)

	// The closing job, scheduled at max_wait, closes it then and not before.
	w := &jobs.BatchCloseWorker{Engine: b.Engine}
	job := &river.Job[jobs.BatchCloseArgs]{JobRow: &rivertype.JobRow{}, Args: jobs.BatchCloseArgs{BatchID: second.ID}}
	var snooze *river.JobSnoozeError
	require.True(t, errors.As(w.Work(ctx, job), &snooze), "not due yet")
	b.clock.Advance(11 * time.Minute)
	require.NoError(t, w.Work(ctx, job))
	second, err = store.BatchGet(ctx, b.Pool, second.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.BatchReady, second.Status)
	var scheduled int
	require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'batch_close' AND scheduled_at > now() + interval '9 minutes'`).Scan(&scheduled))
	require.Equal(t, 3, scheduled, "a River job at max_wait for each of the three batches opened, not a polling loop")
	require.NoError(t, w.Work(ctx, job), "closing twice is a no-op")
}

func TestBatchDecisions(t *testing.T) {
	t.Parallel()
	b := startBatches(t)
	ctx := context.Background()
	var runs []*store.Run
	for i := range 3 {
		run, _ := b.startTag(t, fmt.Sprint("p", i), tagIn{Kind: "ticket.tag", Team: "p"})
		runs = append(runs, run)
	}
	req0 := b.PendingRequest(t, runs[0].ID)
	batchID := *req0.BatchID
	items, err := store.BatchItems(ctx, b.Pool, batchID)
	require.NoError(t, err)
	require.Len(t, items, 3)

	t.Run("Refusals", func(t *testing.T) {
		_, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: batchID, Actor: boss, Action: workflow.RejectAll, Items: shown(items)})
		require.ErrorIs(t, err, workflow.ErrInvalidInput, "rejecting needs a reason")
		_, err = b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: batchID, Actor: boss, Action: workflow.ApproveSelected,
			Items: shown(items), Selected: []string{"00000000-0000-0000-0000-000000000000"}})
		require.ErrorIs(t, err, workflow.ErrInvalidInput)
	})

	// Exactly what was seen: one item changes after the page was rendered,
	// and one is added to the batch.
	_, err = b.Pool.Exec(ctx, `UPDATE approval_requests SET payload_hash = 'changed' WHERE id = $1`, items[1].ID)
	require.NoError(t, err)
	_, late := b.startTag(t, "late", tagIn{Kind: "ticket.tag", Team: "late"})
	_, err = b.Pool.Exec(ctx, `UPDATE approval_requests SET batch_id = $2 WHERE id = $1`, late.ID, batchID)
	require.NoError(t, err)

	res, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: batchID, Actor: boss, Action: workflow.ApproveSelected,
		Items: shown(items), Selected: []string{items[0].ID, items[1].ID}})
	require.NoError(t, err)
	require.Equal(t, 1, res.Approved)
	require.Equal(t, 1, res.LeftOut, "the deselected item goes back to the inbox")
	require.Len(t, res.Refused, 1)
	require.Equal(t, items[1].ID, res.Refused[0].RequestID)
	require.Contains(t, res.Refused[0].Note, "changed")

	b.WaitRun(t, items[0].RunID, vocab.RunCompleted)
	left, err := store.RequestGet(ctx, b.Pool, items[2].ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestPending, left.Status)
	require.Equal(t, vocab.TierExplicit, left.Tier)
	require.Contains(t, left.Note, "Left out of a batch by boss@example.com")
	stillLate, err := store.RequestGet(ctx, b.Pool, late.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestPending, stillLate.Status, "an item added after rendering is not decided")
	d, err := store.DecisionGetByRequest(ctx, b.Pool, items[0].ID)
	require.NoError(t, err)
	require.Equal(t, res.DecisionID, *d.BatchDecisionID, "the item decision points at the batch decision")

	t.Run("ApproveSelectedRejectRest", func(t *testing.T) {
		var rs []*store.Request
		for i := range 3 {
			_, r := b.startTag(t, fmt.Sprint("q", i), tagIn{Kind: "ticket.tag", Team: "q"})
			rs = append(rs, r)
		}
		res, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: *rs[0].BatchID, Actor: boss,
			Action: workflow.ApproveRejectRest, Items: shown(rs), Selected: []string{rs[0].ID}, Reason: "only the first"})
		require.NoError(t, err)
		require.Equal(t, 1, res.Approved)
		require.Equal(t, 2, res.Rejected)
		b.WaitRun(t, rs[1].RunID, vocab.RunRejected)
		batch, err := store.BatchGet(ctx, b.Pool, *rs[0].BatchID)
		require.NoError(t, err)
		require.Equal(t, vocab.BatchDecided, batch.Status)
	})

	t.Run("SelfStartedItemsAreSkipped", func(t *testing.T) {
		var rs []*store.Request
		for i := range 3 {
			_, r := b.startTag(t, fmt.Sprint("s", i), tagIn{Kind: "ticket.tag", Team: "s"})
			rs = append(rs, r)
		}
		res, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: *rs[0].BatchID,
			Actor: workflow.Actor{Name: "agent", Roles: []vocab.Role{"reviewer"}}, Action: workflow.ApproveSelected,
			Items: shown(rs), Selected: []string{rs[0].ID, rs[1].ID, rs[2].ID}})
		require.NoError(t, err)
		require.Zero(t, res.Approved)
		require.Len(t, res.Refused, 3)
		require.Contains(t, res.Refused[0].Note, "you started this run")
	})
}

func TestBatchSettlesWhenItsItemsAreDecidedOneByOne(t *testing.T) {
	t.Parallel()
	b := startBatches(t)
	ctx := context.Background()
	var rs []*store.Request
	for i := range 3 {
		_, r := b.startTag(t, fmt.Sprint("o", i), tagIn{Kind: "ticket.tag", Team: "o"})
		rs = append(rs, r)
	}
	for i, r := range rs {
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: r.ID, Actor: boss, Verdict: vocab.VerdictApprove, PayloadHash: r.PayloadHash})
		require.NoError(t, err)
		batch, err := store.BatchGet(ctx, b.Pool, *r.BatchID)
		require.NoError(t, err)
		if i < len(rs)-1 {
			require.Equal(t, vocab.BatchReady, batch.Status)
		} else {
			require.Equal(t, vocab.BatchDecided, batch.Status, "the last item settles the batch")
		}
	}

	// So does cancelling the run of the last pending item.
	var more []*store.Request
	for i := range 3 {
		_, r := b.startTag(t, fmt.Sprint("x", i), tagIn{Kind: "ticket.tag", Team: "x"})
		more = append(more, r)
	}
	for _, r := range more[:2] {
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: r.ID, Actor: boss, Verdict: vocab.VerdictReject, Reason: "no", PayloadHash: r.PayloadHash})
		require.NoError(t, err)
	}
	require.NoError(t, b.Engine.Cancel(ctx, more[2].RunID, "admin"))
	batch, err := store.BatchGet(ctx, b.Pool, *more[2].BatchID)
	require.NoError(t, err)
	require.Equal(t, vocab.BatchDecided, batch.Status)
}

func TestConcurrentBatchReviewers(t *testing.T) {
	t.Parallel()
	b := startBatches(t)
	ctx := context.Background()
	var rs []*store.Request
	for i := range 3 {
		_, r := b.startTag(t, fmt.Sprint("c", i), tagIn{Kind: "ticket.tag", Team: "c"})
		rs = append(rs, r)
	}
	var wg sync.WaitGroup
	results := make([]*workflow.BatchResult, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: *rs[0].BatchID,
				Actor: workflow.Actor{Name: fmt.Sprintf("r%d", i), Roles: []vocab.Role{"reviewer"}}, Action: workflow.ApproveSelected,
				Items: shown(rs), Selected: []string{rs[0].ID, rs[1].ID, rs[2].ID}})
			require.NoError(t, err)
			results[i] = res
		}()
	}
	wg.Wait()
	approved, refused := 0, 0
	for _, r := range results {
		approved += r.Approved
		refused += len(r.Refused)
	}
	require.Equal(t, 3, approved, "each item decided once")
	require.Equal(t, 9, refused, "the others were told it was decided")
	for _, r := range rs {
		b.WaitRun(t, r.RunID, vocab.RunCompleted)
	}
	require.EqualValues(t, 3, b.applied.Load())
}

func TestThousandItemBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 runs")
	}
	t.Parallel()
	b := startBatches(t)
	ctx := context.Background()
	var ids []string
	for i := range 1000 {
		raw, _ := json.Marshal(tagIn{Kind: "ticket.bulk", Team: "bulk"})
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "tagger", BusinessKey: fmt.Sprint("k", i), Input: raw, StartedBy: "agent"})
		require.NoError(t, err)
		ids = append(ids, run.ID)
	}
	var batchID string
	require.Eventually(t, func() bool {
		return b.Pool.QueryRow(ctx, `SELECT id FROM batches WHERE status = 'ready' AND size = 1000`).Scan(&batchID) == nil
	}, 60*time.Second, 50*time.Millisecond)
	items, err := store.BatchItems(ctx, b.Pool, batchID)
	require.NoError(t, err)
	require.Len(t, items, 1000)
	sel := make([]string, len(items))
	for i, r := range items {
		sel[i] = r.ID
	}
	res, err := b.Engine.DecideBatch(ctx, workflow.BatchDecideParams{BatchID: batchID, Actor: boss, Action: workflow.ApproveSelected,
		Items: shown(items), Selected: sel})
	require.NoError(t, err)
	require.Equal(t, 1000, res.Approved)
	require.Equal(t, 1000, res.Resumed)
	for _, id := range ids {
		b.WaitRunWithin(t, id, 60*time.Second, vocab.RunCompleted)
	}
	require.EqualValues(t, 1000, b.applied.Load())
}

func TestDeadlines(t *testing.T) {
	t.Parallel()
	b := startBatches(t)
	ctx := context.Background()

	t.Run("Reject", func(t *testing.T) {
		run, req := b.startTag(t, "r", tagIn{Kind: "refund", Team: "x"})
		require.NotNil(t, req.Deadline)
		var jobsAt int
		require.NoError(t, b.Pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE kind = 'request_deadline' AND args->>'request_id' = $1
			AND abs(extract(epoch FROM scheduled_at - $2::timestamptz)) < 1`, req.ID, *req.Deadline).Scan(&jobsAt))
		require.Equal(t, 1, jobsAt, "a River job at the deadline")
		retry, err := b.Engine.Expire(ctx, req.ID)
		require.NoError(t, err)
		require.NotNil(t, retry, "not due yet")
		b.clock.Advance(31 * time.Minute)
		defer b.clock.Advance(-31 * time.Minute)
		_, err = b.Engine.Expire(ctx, req.ID)
		require.NoError(t, err)
		b.WaitRun(t, run.ID, vocab.RunRejected)
		d, err := store.DecisionGetByRequest(ctx, b.Pool, req.ID)
		require.NoError(t, err)
		require.Equal(t, "policy:refunds-reject", d.Actor)
		require.Contains(t, d.Reason, "deadline")
		_, err = b.Engine.Expire(ctx, req.ID)
		require.NoError(t, err, "a decided request makes the job a no-op")
	})

	t.Run("Escalate", func(t *testing.T) {
		_, req := b.startTag(t, "e", tagIn{Kind: "refund", Team: "x", Escalate: true})
		require.False(t, workflow.CanDecide(req, []vocab.Role{"admin-only-role"}))
		b.clock.Advance(31 * time.Minute)
		defer b.clock.Advance(-31 * time.Minute)
		_, err := b.Engine.Expire(ctx, req.ID)
		require.NoError(t, err)
		got, err := store.RequestGet(ctx, b.Pool, req.ID)
		require.NoError(t, err)
		require.NotNil(t, got.EscalatedAt)
		require.Equal(t, vocab.RequestPending, got.Status)
		require.Contains(t, got.Note, "admin may now decide it")
		rows, err := store.RequestListInbox(ctx, b.Pool, store.InboxParams{Limit: 1, Now: time.Now()})
		require.NoError(t, err)
		require.Equal(t, req.ID, rows[0].Request.ID, "escalated requests top the inbox")
	})

	t.Run("ApproveForABatch", func(t *testing.T) {
		var rs []*store.Request
		for i := range 3 {
			_, r := b.startTag(t, fmt.Sprint("d", i), tagIn{Kind: "ticket.tag", Team: "d"})
			rs = append(rs, r)
		}
		b.clock.Advance(61 * time.Minute)
		defer b.clock.Advance(-61 * time.Minute)
		for _, r := range rs {
			_, err := b.Engine.Expire(ctx, r.ID)
			require.NoError(t, err)
			b.WaitRun(t, r.RunID, vocab.RunCompleted)
			d, err := store.DecisionGetByRequest(ctx, b.Pool, r.ID)
			require.NoError(t, err)
			require.Equal(t, "policy:tags", d.Actor)
			require.Equal(t, vocab.VerdictApprove, d.Verdict)
		}
	})
}
