package store

import (
	"context"
	"fmt"
)

// BatchDecisionRunStatuses counts the statuses of the runs a batch decision
// decided, for its progress line.
func BatchDecisionRunStatuses(ctx context.Context, db DBTX, decisionID string) (map[string]int, int, error) {
	rows, err := db.Query(ctx, `SELECT w.status, count(*) FROM decisions d JOIN workflow_runs w ON w.id = d.run_id
		WHERE d.batch_decision_id = $1 AND d.verdict <> 'reject' GROUP BY w.status`, decisionID)
	if err != nil {
		return nil, 0, fmt.Errorf("batch progress: %w", interpret(err))
	}
	defer rows.Close()
	counts, total := map[string]int{}, 0
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, 0, interpret(err)
		}
		counts[s], total = n, total+n
	}
	return counts, total, interpret(rows.Err())
}
