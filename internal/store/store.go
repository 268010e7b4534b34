// Package store holds every SQL statement of Countersign. Functions take a DBTX
// as their first argument so that one query runs on the pool or inside a
// transaction; nothing outside this package sees pgx rows.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/countersign/countersign/internal/store/dbsqlc"
)

// queries are the statements sqlc generates from dbsqlc/*.sql. Their rows
// are converted to the exported types here (runFromInternal, ...): nothing
// outside the store sees a generated type.
var queries = dbsqlc.New()

// DBTX is what a query needs: a pool, a connection or a transaction.
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Beginner starts transactions (a pool or a connection).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// ErrNotFound is returned when a row asked for by id does not exist.
var ErrNotFound = errors.New("not found")

// ErrPermission is returned when the database role may not read what was
// asked for (the settings table, for countersign_app).
var ErrPermission = errors.New("permission denied")

// ErrConflict is returned when a row would violate a uniqueness rule.
var ErrConflict = errors.New("conflict")

// ErrInvalidInput is returned when PostgreSQL refuses a value as data: an id
// that is not a uuid, JSON that jsonb cannot hold, a number out of range. The
// caller's input was wrong, and nothing was written.
var ErrInvalidInput = errors.New("invalid input")

// WithTx runs fn in a transaction and commits it when fn returns nil.
func WithTx(ctx context.Context, db Beginner, fn func(ctx context.Context, tx pgx.Tx) error) error {
	_, err := WithTxV(ctx, db, func(ctx context.Context, tx pgx.Tx) (struct{}, error) { return struct{}{}, fn(ctx, tx) })
	return err
}

// WithTxV is WithTx for a function that returns a value.
func WithTxV[T any](ctx context.Context, db Beginner, fn func(ctx context.Context, tx pgx.Tx) (T, error)) (T, error) {
	var zero T
	tx, err := db.Begin(ctx)
	if err != nil {
		return zero, fmt.Errorf("begin: %w", interpret(err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	v, err := fn(ctx, tx)
	if err != nil {
		return zero, err
	}
	if err := tx.Commit(ctx); err != nil {
		return zero, fmt.Errorf("commit: %w", interpret(err))
	}
	return v, nil
}

// interpret translates a PostgreSQL error, once, into the store's sentinels,
// by class, so that callers and the web layer never read SQLSTATEs:
//
//   - no row: ErrNotFound;
//   - 23505 unique violation: ErrConflict, naming the constraint;
//   - 23503 foreign key violation: ErrNotFound, since the row referred to does
//     not exist (nothing here deletes a row that others still reference:
//     every reference cascades);
//   - class 22 data exceptions (22P02 a malformed uuid or JSON such as a lone
//     "\ud800", 22P05 an untranslatable character, 22021, 22003 a number out
//     of range, ...) and 54000 (a value too large to index): ErrInvalidInput,
//     with PostgreSQL's message, since the caller sent a value the database
//     cannot store or compare.
//
// Anything else (a lost connection, a check constraint, a serialization
// failure) is returned as it is: it is not the caller's mistake.
func interpret(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505":
			return fmt.Errorf("%w: %s", ErrConflict, pgErr.ConstraintName)
		case pgErr.Code == "23503":
			return fmt.Errorf("%w: %s refers to a row that does not exist", ErrNotFound, pgErr.ConstraintName)
		case pgErr.Code == "42501": // insufficient_privilege
			return ErrPermission
		case strings.HasPrefix(pgErr.Code, "22"), pgErr.Code == "54000":
			msg := pgErr.Message
			if pgErr.Detail != "" {
				msg += " (" + strings.TrimSuffix(pgErr.Detail, ".") + ")"
			}
			return fmt.Errorf("%w: %s", ErrInvalidInput, msg)
		}
	}
	return err
}

// oneRow checks the outcome of an update or delete that must affect exactly
// one row: the error interpreted, and ErrNotFound when no row matched.
func oneRow(n int64, err error) error {
	if err != nil {
		return interpret(err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// convertAll converts generated rows to exported ones; nil for none, as the
// listings have always returned.
func convertAll[R, T any](rows []R, convert func(R) T) []T {
	var out []T
	for _, r := range rows {
		out = append(out, convert(r))
	}
	return out
}

// likeEscape makes s a literal LIKE pattern (the caller appends its
// wildcard).
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(s)
}

// afterID is a keyset cursor's id, nil when there is no cursor: an empty
// string is not a uuid.
func afterID(after *time.Time, id string) *string {
	if after == nil {
		return nil
	}
	return &id
}

// IsID reports whether s is a uuid as PostgreSQL reads one, in its
// 36-character form: uuid.Parse alone also takes "urn:uuid:…", which
// PostgreSQL refuses. Ids are checked with it at the edges, so that a bad one
// is refused as such rather than reaching a query.
func IsID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

// Notify queues a message on the countersign channel; PostgreSQL delivers it
// when the surrounding transaction commits.
func Notify(ctx context.Context, db DBTX, payload string) error {
	if err := queries.Notify(ctx, db, payload); err != nil {
		return fmt.Errorf("notify: %w", interpret(err))
	}
	return nil
}

// NotifyMany sends several payloads on the countersign channel in one
// statement, which commits on its own and without waiting for its WAL
// flush. It refuses a transaction, whose commit it would make
// asynchronous too.
func NotifyMany(ctx context.Context, db DBTX, payloads []string) error {
	if _, inTx := db.(pgx.Tx); inTx {
		return errors.New("notify: NotifyMany commits on its own; it cannot run in a transaction")
	}
	if err := queries.NotifyMany(ctx, db, payloads); err != nil {
		return fmt.Errorf("notify: %w", interpret(err))
	}
	return nil
}
