package store

import (
	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/vocab"
)

// InboxListQuery is the statement RequestListInbox runs for p's requests of
// one rank, with claimed as the actor's live claims, for the tests of its plan.
func InboxListQuery(p InboxParams, claimed []string, rank, limit int) (string, pgx.NamedArgs) {
	p.claimedIDs = claimed
	return p.listQuery(rank, limit)
}

// InboxCountQuery is the statement RequestCountInbox runs for p's requests
// of one tier, for the tests of its plan.
func InboxCountQuery(p InboxParams, claimed []string, tier vocab.Tier) (string, pgx.NamedArgs) {
	p.claimedIDs = claimed
	return p.countQuery(tier)
}

// InboxFilterSQL is sql/inbox_filter.sql, whose opening comment names the
// index of each combination of filters, for the tests of the plans.
var InboxFilterSQL = inboxFilterSQL

// RunOrphansLockSQL is the sweeper's statement as RunOrphansLock runs it,
// for the test of its plan.
var RunOrphansLockSQL = withLiveJob(runOrphansLockSQL)
