package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/vocab"
)

func TestInboxFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := time.Now()
	run := b.run(t, "w") // started by "test"
	insert := func(seq int, tier vocab.Tier, roles []vocab.Role, startedBy string) *store.Request {
		r, err := store.RequestInsert(b.ctx, b.pool, &store.Request{RunID: run.ID, StepSeq: seq, Workflow: "w",
			Tier: tier, Status: vocab.RequestPending, ActionKind: "send", Summary: fmt.Sprint("s", seq), Action: json.RawMessage(`{}`),
			PayloadHash: "h", PolicyVersion: 1, Rule: "rule", Reason: "r", ApprovalsRequired: 2, Roles: roles, StartedBy: startedBy})
		require.NoError(t, err)
		return r
	}
	anyone := insert(0, vocab.TierExplicit, nil, "test")
	approvers := insert(1, vocab.TierExplicit, []vocab.Role{vocab.RoleApprover}, "test")
	_ = insert(2, vocab.TierBatched, nil, "ann@example.com") // her own run
	voted := insert(3, vocab.TierBatched, nil, "test")
	_, err := store.VoteAdd(b.ctx, b.pool, voted.ID, "ann@example.com", "")
	require.NoError(t, err)

	ids := func(p store.InboxParams) []string {
		t.Helper()
		p.Now = now
		rows, err := store.RequestListInbox(b.ctx, b.pool, p)
		require.NoError(t, err)
		var out []string
		for _, r := range rows {
			out = append(out, r.Request.ID)
		}
		return out
	}
	ann := store.InboxParams{Actor: "ann@example.com", ActorRole: vocab.RoleReviewer}

	t.Run("CanDecide", func(t *testing.T) {
		p := ann
		p.CanDecide = true
		require.Equal(t, []string{anyone.ID}, ids(p), "not the approvers' rule, not her own run, not one she approved")
		p.ActorRole = vocab.RoleAdmin
		require.Equal(t, []string{anyone.ID, approvers.ID}, ids(p), "admins may decide any rule")
		require.Len(t, ids(ann), 4, "off, every pending request")
	})

	t.Run("CountsFollowTheFilter", func(t *testing.T) {
		p := ann
		p.Now = now
		counts, err := store.RequestCountInbox(b.ctx, b.pool, p)
		require.NoError(t, err)
		require.Equal(t, []store.TierCount{{Tier: vocab.TierExplicit, Count: 2}, {Tier: vocab.TierBatched, Count: 2}}, counts)
		p.CanDecide = true
		counts, err = store.RequestCountInbox(b.ctx, b.pool, p)
		require.NoError(t, err)
		require.Equal(t, []store.TierCount{{Tier: vocab.TierExplicit, Count: 1}, {Tier: vocab.TierBatched, Count: 0}}, counts)
		p.CanDecide, p.Tier = false, string(vocab.TierBatched)
		counts, err = store.RequestCountInbox(b.ctx, b.pool, p)
		require.NoError(t, err)
		require.Equal(t, 0, counts[0].Count, "the tier filter hides the other tier's count")
		require.Equal(t, 2, counts[1].Count)
	})

	t.Run("ClaimedByMe", func(t *testing.T) {
		c, err := store.ClaimSet(b.ctx, b.pool, approvers.ID, "ann@example.com", now)
		require.NoError(t, err)
		require.Equal(t, "ann@example.com", c.Actor)
		p := ann
		p.ClaimedByMe = true
		require.Equal(t, []string{approvers.ID}, ids(p))
		p.Now = now.Add(store.ClaimTimeout + time.Second)
		rows, err := store.RequestListInbox(b.ctx, b.pool, p)
		require.NoError(t, err)
		require.Empty(t, rows, "a lapsed claim is no longer hers")
	})
}

func TestClaims(t *testing.T) {
	t.Parallel()
	b := setup(t)
	run := b.run(t, "w")
	req := b.request(t, run, 0, requestOpts{})
	now := time.Now()

	c, err := store.ClaimSet(b.ctx, b.pool, req.ID, "ann", now)
	require.NoError(t, err)
	require.Equal(t, "ann", c.Actor)

	t.Run("LiveClaimIsKept", func(t *testing.T) {
		c, err := store.ClaimSet(b.ctx, b.pool, req.ID, "bob", now.Add(time.Minute))
		require.NoError(t, err)
		require.Equal(t, "ann", c.Actor, "bob sees who holds it; the claim stays ann's")
		require.ErrorIs(t, store.ClaimRenew(b.ctx, b.pool, req.ID, "bob", now.Add(time.Minute)), store.ErrNotFound)
	})

	// Renewed at +4m, the claim outlives the 5 minutes from its start.
	require.NoError(t, store.ClaimRenew(b.ctx, b.pool, req.ID, "ann", now.Add(4*time.Minute)))
	live, err := store.ClaimListLive(b.ctx, b.pool, []string{req.ID}, now.Add(8*time.Minute))
	require.NoError(t, err)
	require.Equal(t, "ann", live[req.ID].Actor, "renewed, it is live at +8m")
	live, err = store.ClaimListLive(b.ctx, b.pool, []string{req.ID}, now.Add(10*time.Minute))
	require.NoError(t, err)
	require.Empty(t, live, "5 minutes after the last renewal it lapsed")

	t.Run("LapsedClaimIsTakenOver", func(t *testing.T) {
		c, err := store.ClaimSet(b.ctx, b.pool, req.ID, "bob", now.Add(10*time.Minute))
		require.NoError(t, err)
		require.Equal(t, "bob", c.Actor)
		require.ErrorIs(t, store.ClaimRenew(b.ctx, b.pool, req.ID, "ann", now.Add(10*time.Minute)), store.ErrNotFound)
		require.NoError(t, store.ClaimRelease(b.ctx, b.pool, req.ID, "ann"), "releasing another's claim changes nothing")
		require.NoError(t, store.ClaimRelease(b.ctx, b.pool, req.ID, "bob"))
		live, err := store.ClaimListLive(b.ctx, b.pool, []string{req.ID}, now.Add(10*time.Minute))
		require.NoError(t, err)
		require.Empty(t, live)
	})

	t.Run("DecidedRequestCannotBeClaimed", func(t *testing.T) {
		done := b.request(t, run, 1, requestOpts{})
		_, err := store.RequestDecide(b.ctx, b.pool, done.ID, "h", string(vocab.RequestApproved), "ann")
		require.NoError(t, err)
		_, err = store.ClaimSet(b.ctx, b.pool, done.ID, "ann", now)
		require.ErrorIs(t, err, store.ErrNotFound)
	})
}

func TestSavedFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ann, err := store.UserInsert(b.ctx, b.pool, "ann@example.com", "Ann", "reviewer", "x")
	require.NoError(t, err)
	bob, err := store.UserInsert(b.ctx, b.pool, "bob@example.com", "Bob", "reviewer", "x")
	require.NoError(t, err)

	f, err := store.SavedFilterSave(b.ctx, b.pool, ann.ID, "refunds", "tier=explicit")
	require.NoError(t, err)
	_, err = store.SavedFilterSave(b.ctx, b.pool, ann.ID, "refunds", "tier=batched")
	require.NoError(t, err, "the same name replaces the query")
	list, err := store.SavedFilterList(b.ctx, b.pool, ann.ID)
	require.NoError(t, err)
	require.Equal(t, []store.SavedFilter{{ID: f.ID, Name: "refunds", Query: "tier=batched"}}, list)

	others, err := store.SavedFilterList(b.ctx, b.pool, bob.ID)
	require.NoError(t, err)
	require.Empty(t, others, "filters are per user")
	require.ErrorIs(t, store.SavedFilterDelete(b.ctx, b.pool, bob.ID, f.ID), store.ErrNotFound, "nor can another user delete them")

	for i := 1; i < store.SavedFiltersMax; i++ {
		_, err := store.SavedFilterSave(b.ctx, b.pool, ann.ID, fmt.Sprint("f", i), "tier=explicit")
		require.NoError(t, err)
	}
	_, err = store.SavedFilterSave(b.ctx, b.pool, ann.ID, "one too many", "tier=explicit")
	require.True(t, errors.Is(err, store.ErrTooManyFilters) && errors.Is(err, store.ErrInvalidInput), "%v", err)

	require.NoError(t, store.SavedFilterDelete(b.ctx, b.pool, ann.ID, f.ID))
	list, err = store.SavedFilterList(b.ctx, b.pool, ann.ID)
	require.NoError(t, err)
	require.Len(t, list, store.SavedFiltersMax-1)
}
