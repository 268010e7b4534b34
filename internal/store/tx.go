package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// TxCommitAsync lets tx commit without waiting for its WAL flush: its
// changes are visible at once, but a crash of the database server in the
// next moments (wal_writer_delay, 200 ms by default) may lose them. Only
// for a transaction whose durability a later synchronous commit in the same
// flow guarantees before anyone is told of it: a commit flushes all the WAL
// written before its own, the earlier asynchronous commits' included.
func TxCommitAsync(ctx context.Context, tx pgx.Tx) error {
	if err := queries.TxCommitAsync(ctx, tx); err != nil {
		return fmt.Errorf("asynchronous commit: %w", interpret(err))
	}
	return nil
}
