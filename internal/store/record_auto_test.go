package store_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

// TestRequestRecordAuto checks the auto gate's one statement: refused
// whole when the owner no longer holds the run, and otherwise the request
// (approved), its decision, its event and the steps held before it, with the
// request's id and time merged into the approval step's output.
func TestRequestRecordAuto(t *testing.T) {
	t.Parallel()
	b := setup(t)
	owner := uuid.NewString()
	r := b.run(t, "w")
	_, err := store.RunClaim(b.ctx, b.pool, r.ID, 0, statuses(vocab.RunQueued), owner, time.Minute)
	require.NoError(t, err)
	at := time.Now().Add(-time.Minute).UTC()
	steps := func(owner string) []store.StepRecord {
		return []store.StepRecord{
			{RunID: r.ID, Seq: 0, Name: "collect", Kind: vocab.StepKindStep, Output: json.RawMessage(`{"n":1}`), Attempts: 1, StartedAt: at, Owner: owner},
			{RunID: r.ID, Seq: 1, Name: "request_approval", Kind: vocab.StepKindApproval, Attempts: 1, StartedAt: at, Owner: owner,
				Output: json.RawMessage(`{"request_id":"","verdict":"approve","actor":"policy:small","params":{"amount":5},"decided_at":"0001-01-01T00:00:00Z"}`)},
		}
	}
	actor := "policy:small"
	req := func() *store.Request {
		return &store.Request{RunID: r.ID, StepSeq: 1, Workflow: "w", Tier: vocab.TierAuto, Status: vocab.RequestApproved,
			ActionKind: "refund", Summary: "Refund 5 EUR", Action: json.RawMessage(`{"kind":"refund","params":{"amount":5}}`),
			PayloadHash: "h", PolicyVersion: 3, Rule: "small", Reason: "small refunds", ApprovalsRequired: 1, StartedBy: "test",
			DecidedBy: &actor}
	}
	ev := store.AutoEvent{Kind: "decision.auto", Details: map[string]any{"verdict": "approve", "rule": "small"}}

	_, err = store.RequestRecordAuto(b.ctx, b.pool, req(), actor, ev, steps(uuid.NewString())...)
	require.ErrorIs(t, err, store.ErrNotFound, "only the owner records")
	reqs, err := store.RequestListByRun(b.ctx, b.pool, r.ID)
	require.NoError(t, err)
	require.Empty(t, reqs, "a refused record writes no request")
	got, err := store.StepList(b.ctx, b.pool, r.ID)
	require.NoError(t, err)
	require.Empty(t, got, "nor any step")
	events, err := store.AuditList(b.ctx, b.pool, store.AuditFilter{RunID: r.ID}, 0, 10)
	require.NoError(t, err)
	require.Empty(t, events, "nor any event")

	_, err = store.RequestRecordAuto(b.ctx, b.pool, req(), actor, ev, steps(owner)[:1]...)
	require.ErrorIs(t, err, store.ErrInvalidInput, "the approval step comes last")

	saved, err := store.RequestRecordAuto(b.ctx, b.pool, req(), actor, ev, steps(owner)...)
	require.NoError(t, err)
	require.Equal(t, vocab.RequestApproved, saved.Status)
	require.Equal(t, vocab.TierAuto, saved.Tier)
	require.NotNil(t, saved.DecidedAt)
	dec, err := store.DecisionGetByRequest(b.ctx, b.pool, saved.ID)
	require.NoError(t, err)
	require.Equal(t, vocab.VerdictApprove, dec.Verdict)
	require.Equal(t, actor, dec.Actor)
	require.Equal(t, "small", dec.Rule)
	require.Equal(t, 3, dec.PolicyVersion)
	events, err = store.AuditList(b.ctx, b.pool, store.AuditFilter{RunID: r.ID}, 0, 10)
	require.NoError(t, err)
	require.Len(t, events, 1)
	require.Equal(t, "decision.auto", events[0].Kind)
	require.Equal(t, "request", events[0].SubjectType)
	require.Equal(t, saved.ID, events[0].SubjectID)
	run, err := store.RunGet(b.ctx, b.pool, r.ID)
	require.NoError(t, err)
	require.Equal(t, 2, run.StepsUsed)
	require.Equal(t, "request_approval", run.CurrentStep)

	got, err = store.StepList(b.ctx, b.pool, r.ID)
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.JSONEq(t, `{"n":1}`, string(got[0].Output))
	var out struct {
		RequestID string         `json:"request_id"`
		Verdict   string         `json:"verdict"`
		Params    map[string]any `json:"params"`
		DecidedAt time.Time      `json:"decided_at"`
	}
	require.NoError(t, json.Unmarshal(got[1].Output, &out))
	require.Equal(t, saved.ID, out.RequestID)
	require.Equal(t, "approve", out.Verdict)
	require.Equal(t, map[string]any{"amount": float64(5)}, out.Params)
	require.True(t, saved.CreatedAt.Equal(out.DecidedAt), "the step's time is the request's: %s, %s", saved.CreatedAt, out.DecidedAt)
}
