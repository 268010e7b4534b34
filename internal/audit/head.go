package audit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Head is a chain head saved outside the database (by `countersign audit
// head`), so that a later Verify can tell whether the chain still holds it:
// an intact but truncated or rewritten chain verifies on its own, and only a
// copy kept elsewhere shows what was lost.
type Head struct {
	Seq  int64     `json:"seq"`  // 0 when only the hash was saved
	Hash string    `json:"hash"` // hex sha256
	At   time.Time `json:"at,omitzero"`
}

// ErrBadHead is returned by ParseHead for a head it cannot read.
var ErrBadHead = errors.New("not a saved audit head")

// ParseHead reads a saved head: the JSON `audit head --json` writes, the
// "SEQ HASH" line `audit head` prints, "SEQ:HASH", or a bare HASH. It returns
// an error wrapping ErrBadHead for anything else.
func ParseHead(s string) (Head, error) {
	s = strings.TrimSpace(s)
	var h Head
	if strings.HasPrefix(s, "{") {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&h); err != nil {
			return Head{}, fmt.Errorf("%w: %v", ErrBadHead, err)
		}
		if h.Seq < 0 {
			return Head{}, fmt.Errorf("%w: seq %d is negative", ErrBadHead, h.Seq)
		}
	} else {
		seq, hash, ok := strings.Cut(s, " ")
		if !ok {
			seq, hash, ok = strings.Cut(s, ":")
		}
		if !ok {
			seq, hash = "", s
		}
		if seq != "" {
			n, err := strconv.ParseInt(seq, 10, 64)
			if err != nil || n < 0 {
				return Head{}, fmt.Errorf("%w: %q is not a sequence number", ErrBadHead, seq)
			}
			h.Seq = n
		}
		h.Hash = strings.TrimSpace(hash)
	}
	if b, err := hex.DecodeString(h.Hash); err != nil || len(b) != len(Genesis) {
		return Head{}, fmt.Errorf("%w: %q is not a hex sha256 hash (64 hex digits)", ErrBadHead, h.Hash)
	}
	h.Hash = strings.ToLower(h.Hash)
	return h, nil
}

// String is the "SEQ HASH" line `audit head` prints.
func (h Head) String() string { return fmt.Sprintf("%d %s", h.Seq, h.Hash) }

// check compares the saved head with the verified chain: seen is the hash of
// the event at h.Seq ("" when the chain is shorter), found whether any event
// has h.Hash. It returns "" when the chain still holds the head.
func (h Head) check(events int64, atSeq string, found bool) string {
	switch {
	case h.Seq == 0 && h.Hash == hex.EncodeToString(Genesis):
		return "" // saved before the first event: every chain holds it
	case h.Seq == 0 && !found:
		return fmt.Sprintf("the saved head %s is not on the chain: it was truncated or rewritten", h.Hash)
	case h.Seq == 0:
		return ""
	case h.Seq > events:
		return fmt.Sprintf("the chain was truncated: the saved head is event %d, but the chain ends at event %d", h.Seq, events)
	case atSeq != h.Hash:
		return fmt.Sprintf("the chain was rewritten: event %d has hash %s, the saved head says %s", h.Seq, atSeq, h.Hash)
	}
	return ""
}
