package store

import (
	"context"
	"fmt"
)

// BatchDecisionRunStatuses counts the statuses of the runs a batch decision
// decided, for its progress line.
func BatchDecisionRunStatuses(ctx context.Context, db DBTX, decisionID string) (map[string]int, int, error) {
	rows, err := queries.BatchDecisionRunStatuses(ctx, db, &decisionID)
	if err != nil {
		return nil, 0, fmt.Errorf("batch progress: %w", interpret(err))
	}
	counts, total := map[string]int{}, 0
	for _, r := range rows {
		counts[r.Status], total = r.Runs, total+r.Runs
	}
	return counts, total, nil
}
