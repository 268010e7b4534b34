package vocab

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestListsAreComplete checks each list against the constants declared next
// to it, so that a value added to a type and forgotten in its list (and so in
// every menu and every validation) fails here.
func TestListsAreComplete(t *testing.T) {
	t.Parallel()
	t.Run("Tier", func(t *testing.T) {
		require.Equal(t, []Tier{TierAuto, TierBatched, TierExplicit}, Tiers())
	})
	t.Run("Role", func(t *testing.T) {
		require.Equal(t, []Role{RoleViewer, RoleReviewer, RoleApprover, RoleAdmin}, Roles())
	})
	t.Run("RunStatus", func(t *testing.T) {
		require.ElementsMatch(t, []RunStatus{RunQueued, RunRunning, RunWaitingHuman, RunRetrying, RunSleeping, RunWaitingEvent,
			RunFailed, RunCompleted, RunRejected, RunCancelled, RunCompensated, RunCompensationFailed}, RunStatuses())
	})
	t.Run("RequestStatus", func(t *testing.T) {
		require.ElementsMatch(t, []RequestStatus{RequestPending, RequestApproved, RequestRejected,
			RequestChangesRequested, RequestCancelled}, RequestStatuses())
	})
	t.Run("Verdict", func(t *testing.T) {
		require.ElementsMatch(t, []Verdict{VerdictApprove, VerdictReject, VerdictEdit, VerdictRequestChanges}, Verdicts())
	})
	t.Run("StepKind", func(t *testing.T) {
		require.ElementsMatch(t, []StepKind{StepKindStep, StepKindModel, StepKindEffect, StepKindApproval, StepKindSleep, StepKindEvent, StepKindCompensation}, StepKinds())
	})
	t.Run("StepStatus", func(t *testing.T) {
		require.ElementsMatch(t, []StepStatus{StepCompleted, StepFailed, StepWaiting}, StepStatuses())
	})
	t.Run("BatchStatus", func(t *testing.T) {
		require.ElementsMatch(t, []BatchStatus{BatchOpen, BatchReady, BatchDecided}, BatchStatuses())
	})
	t.Run("ListsAreFresh", func(t *testing.T) {
		Tiers()[0] = "changed"
		require.Equal(t, TierAuto, Tiers()[0], "a caller cannot change the list for everyone")
	})
}

func TestValid(t *testing.T) {
	t.Parallel()
	require.True(t, TierBatched.Valid())
	require.False(t, Tier("sometimes").Valid())
	require.False(t, Tier("").Valid())
	require.True(t, RoleViewer.Valid())
	require.False(t, Role("boss").Valid())
	require.True(t, RunWaitingHuman.Valid())
	require.False(t, RunStatus("waiting human").Valid())
	require.True(t, RequestChangesRequested.Valid())
	require.False(t, Verdict("approved").Valid(), "a request status is not a verdict")
	require.True(t, StepKindModel.Valid())
	require.True(t, StepWaiting.Valid())
	require.True(t, BatchReady.Valid())
	require.False(t, BatchStatus("closed").Valid())
	require.True(t, DeliveryFailed.Valid())
	require.False(t, DeliveryStatus("lost").Valid())
}

func TestTierRank(t *testing.T) {
	t.Parallel()
	require.Less(t, TierAuto.Rank(), TierBatched.Rank())
	require.Less(t, TierBatched.Rank(), TierExplicit.Rank())
	require.True(t, TierExplicit.StricterThan(TierBatched))
	require.True(t, TierBatched.StricterThan(TierAuto))
	require.False(t, TierBatched.StricterThan(TierBatched))
	require.False(t, TierAuto.StricterThan(TierExplicit))
	require.Equal(t, TierExplicit.Rank(), Tier("unknown").Rank(), "an unknown tier is never taken for a looser one")
}

func TestRoleCanDecide(t *testing.T) {
	t.Parallel()
	for _, r := range Roles() {
		require.Equal(t, r != RoleViewer, r.CanDecide(), r)
	}
	require.False(t, Role("boss").CanDecide())
}

func TestRunStatusFinal(t *testing.T) {
	t.Parallel()
	var final []RunStatus
	for _, s := range RunStatuses() {
		if s.Final() {
			final = append(final, s)
		}
	}
	require.ElementsMatch(t, []RunStatus{RunCompleted, RunFailed, RunRejected, RunCancelled, RunCompensated, RunCompensationFailed}, final)
}

func TestVerdict(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		verdict  Verdict
		status   RequestStatus
		approves bool
		label    string
	}{
		{VerdictApprove, RequestApproved, true, "approved"},
		{VerdictEdit, RequestApproved, true, "approved with edits"},
		{VerdictReject, RequestRejected, false, "rejected"},
		{VerdictRequestChanges, RequestChangesRequested, false, "changes requested"},
		{"maybe", "", false, "maybe"},
	} {
		t.Run(string(tc.verdict), func(t *testing.T) {
			require.Equal(t, tc.status, tc.verdict.RequestStatus())
			require.Equal(t, tc.approves, tc.verdict.Approves())
			require.Equal(t, tc.label, tc.verdict.Label())
		})
	}
	for _, v := range Verdicts() {
		require.True(t, v.RequestStatus().Valid(), "every verdict leads to a request status: %s", v)
	}
}

func TestJoin(t *testing.T) {
	t.Parallel()
	require.Equal(t, "auto, batched, explicit", Join(Tiers(), ", "))
	require.Equal(t, "", Join([]Role(nil), ", "))
}
