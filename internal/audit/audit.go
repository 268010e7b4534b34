// Package audit verifies the hash chain of the audit log: each event's hash is
// sha256 of the previous event's hash followed by the event's canonical
// encoding. The database computes hashes as events are appended (the
// audit_append function); this package recomputes them independently.
package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/countersign/countersign/internal/store"
)

// Canonical is the encoding the hash covers; it mirrors the SQL function
// audit_canonical. Every field is length-prefixed, so no two events share one.
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

// Result is the outcome of a verification.
type Result struct {
	Events int64
	Head   []byte
	// BrokenAt is the sequence number of the first event that does not verify,
	// 0 when the chain is intact; Problem says why.
	BrokenAt int64
	Problem  string
}

// OK reports whether the whole chain verified.
func (r Result) OK() bool { return r.BrokenAt == 0 }

// HeadHex is the head hash in hex.
func (r Result) HeadHex() string { return hex.EncodeToString(r.Head) }

var errStop = errors.New("stop")

// Verify walks the whole chain in order, streaming it, and reports the first
// event whose sequence, link or hash is wrong.
func Verify(ctx context.Context, db store.DBTX) (Result, error) {
	var res Result
	prev := Genesis
	want := int64(1)
	err := store.AuditScan(ctx, db, 1, func(e *store.AuditEvent) error {
		switch {
		case e.Seq != want:
			res.BrokenAt, res.Problem = want, fmt.Sprintf("event %d is missing (next present is %d)", want, e.Seq)
		case !bytes.Equal(e.PrevHash, prev):
			res.BrokenAt, res.Problem = e.Seq, "prev_hash does not match the hash of the event before it"
		case !bytes.Equal(e.Hash, Hash(prev, e)):
			res.BrokenAt, res.Problem = e.Seq, "hash does not match the event's contents (the row was changed)"
		}
		if res.BrokenAt != 0 {
			return errStop
		}
		prev, want = e.Hash, want+1
		res.Events++
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return res, err
	}
	res.Head = prev
	return res, nil
}
