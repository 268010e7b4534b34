// Package audit keeps the audit log's hash chain. Events are appended (by
// Append, with a details type per Kind) inside the transactions they record, without a lock;
// Chain then links committed events in commit order: each gets the next
// sequence number, the previous event's hash, and
// hash = sha256(prev_hash ‖ canonical encoding). Verify walks the chain and
// names the first event that does not verify.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/store"
)

// Canonical is the encoding the hash covers: every field length-prefixed, so
// that no two events encode alike.
func Canonical(e *store.AuditEvent) []byte {
	runID := ""
	if e.RunID != nil {
		runID = *e.RunID
	}
	field := func(s string) string { return strconv.Itoa(len(s)) + ":" + s }
	return []byte(strings.Join([]string{"v1", strconv.FormatInt(e.Seq, 10), strconv.FormatInt(e.AtMicros, 10),
		field(e.Actor), field(e.Kind), field(e.SubjectType), field(e.SubjectID), field(runID), field(e.DetailsText)}, "|"))
}

// Hash returns sha256(prev ‖ Canonical(e)).
func Hash(prev []byte, e *store.AuditEvent) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(Canonical(e))
	return h.Sum(nil)
}

// Genesis is the previous hash of the first event.
var Genesis = make([]byte, sha256.Size)

// ChainBatch bounds how many events one chaining transaction links.
const ChainBatch = 5000

// Chain links every committed, unchained event, in batches, and returns how
// many it linked. Concurrent chainers take turns; none can fork the chain.
func Chain(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	return ChainLinked(ctx, pool, nil)
}

// ChainLinked is Chain, calling linked (when not nil) with each event it
// linked, its Seq set, once the batch that linked it has committed: a
// caller that waits for one event's place in the chain finds it there
// without reading it back.
func ChainLinked(ctx context.Context, pool *pgxpool.Pool, linked func(*store.AuditEvent)) (int, error) {
	total := 0
	for {
		events, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) ([]*store.AuditEvent, error) {
			if err := store.AuditChainLock(ctx, tx); err != nil {
				return nil, err
			}
			return chainLocked(ctx, tx)
		})
		if err != nil {
			return total, err
		}
		total += len(events)
		if linked != nil {
			for _, e := range events {
				linked(e)
			}
		}
		if len(events) < ChainBatch {
			return total, nil
		}
	}
}

// ChainIfFree links, in tx, the events tx sees unchained (its own
// included, up to ChainBatch) when no other chainer holds the chain, and
// reports whether it did; it never waits. A transaction that records a
// decision calls it last, so that the decision's event commits chained and
// a receipt read right after (a long poll, the approvals API's answer)
// need not chain it on demand, one commit more. It holds the chain until
// tx ends: call it just before the commit.
func ChainIfFree(ctx context.Context, tx pgx.Tx) (bool, error) {
	locked, err := store.AuditChainTryLock(ctx, tx)
	if err != nil || !locked {
		return false, err
	}
	_, err = chainLocked(ctx, tx)
	return err == nil, err
}

// chainLocked links up to ChainBatch unchained events in tx, which holds
// the chain lock, after the chain's head, and returns them.
func chainLocked(ctx context.Context, tx pgx.Tx) ([]*store.AuditEvent, error) {
	// The head comes with the events, read in the same snapshot, taken
	// after the lock: the head no other chainer can move until tx ends.
	seq, prev, events, err := store.AuditUnchained(ctx, tx, ChainBatch)
	if err != nil || len(events) == 0 {
		return nil, err
	}
	if prev == nil {
		prev = Genesis
	}
	for _, e := range events {
		seq++
		e.Seq, e.PrevHash = seq, prev
		e.Hash = Hash(prev, e)
		prev = e.Hash
	}
	if err := store.AuditSetChain(ctx, tx, events); err != nil {
		return nil, err
	}
	return events, nil
}

// RunChainer links new events every interval until ctx ends. Every worker
// process runs one; they take turns.
func RunChainer(ctx context.Context, pool *pgxpool.Pool, interval time.Duration, logger *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := Chain(ctx, pool); err != nil && ctx.Err() == nil {
			logger.Error("audit chaining", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Result is the outcome of a verification.
type Result struct {
	Events int64
	Head   []byte
	// Unchained counts events recorded but not yet linked (committed in the
	// last moments); they are not covered by this verification.
	Unchained int64
	// BrokenAt is the sequence number of the first event that does not verify,
	// 0 when the chain is intact; Problem says why.
	BrokenAt int64
	Problem  string
	// HeadProblem says why the chain no longer holds the saved head given
	// to VerifyHead; "" when it does or when none was given.
	HeadProblem string
	// OffChain counts events on neither the chain nor its queue (a chain
	// row or queue row removed, an event inserted without the queue's
	// trigger): no verification covers them, so the log does not verify.
	OffChain int64
}

// OK reports whether the whole chain verified and holds the saved head,
// and every event is on it or queued for it.
func (r Result) OK() bool { return r.BrokenAt == 0 && r.HeadProblem == "" && r.OffChain == 0 }

// HeadHex is the head hash in hex.
func (r Result) HeadHex() string { return hex.EncodeToString(r.Head) }

var errStop = errors.New("stop")

// Verify walks the whole chain in order, streaming it, and reports the first
// event whose sequence, link or hash is wrong.
func Verify(ctx context.Context, db store.DBTX) (Result, error) {
	return VerifyHead(ctx, db, nil)
}

// VerifyHead is Verify that also checks that the chain still holds a head
// saved earlier: a chain whose tail was cut, or that was rewritten and
// re-hashed from some event on, verifies by itself but no longer holds the
// saved head; HeadProblem then names which.
func VerifyHead(ctx context.Context, db store.DBTX, saved *Head) (Result, error) {
	var res Result
	prev := Genesis
	want := int64(1)
	var atSeq string
	var found bool
	err := store.AuditScan(ctx, db, 1, func(e *store.AuditEvent) error {
		switch {
		case e.Seq != want:
			res.BrokenAt, res.Problem = want, fmt.Sprintf("event %d is missing (the next present is %d)", want, e.Seq)
		case !bytes.Equal(e.PrevHash, prev):
			res.BrokenAt, res.Problem = e.Seq, "prev_hash does not match the hash of the event before it"
		case !bytes.Equal(e.Hash, Hash(prev, e)):
			res.BrokenAt, res.Problem = e.Seq, "hash does not match the event's contents (the row was changed)"
		}
		if res.BrokenAt != 0 {
			return errStop
		}
		if saved != nil && (e.Seq == saved.Seq || saved.Seq == 0) {
			h := hex.EncodeToString(e.Hash)
			if e.Seq == saved.Seq {
				atSeq = h
			}
			found = found || h == saved.Hash
		}
		prev, want = e.Hash, want+1
		res.Events++
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return res, err
	}
	res.Head = prev
	if saved != nil && res.BrokenAt == 0 {
		res.HeadProblem = saved.check(res.Events, atSeq, found)
	}
	if res.OffChain, err = store.AuditOffChainCount(ctx, db); err != nil {
		return res, err
	}
	res.Unchained, err = store.AuditUnchainedCount(ctx, db)
	return res, err
}
