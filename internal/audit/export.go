package audit

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/countersign/countersign/internal/store"
)

// Formats an export can take.
const (
	CSV   = "csv"
	JSONL = "jsonl"
)

// CSVHeader names the export's columns.
var CSVHeader = []string{"id", "seq", "at", "actor", "kind", "subject_type", "subject_id", "run_id",
	"verdict", "workflow", "rule", "tier", "details", "prev_hash", "hash"}

// Line is one exported event: hashes in hex, so that a reader can verify the
// chain from the export alone.
type Line struct {
	ID          int64           `json:"id"`
	Seq         int64           `json:"seq,omitempty"`
	At          time.Time       `json:"at"`
	Actor       string          `json:"actor"`
	Kind        string          `json:"kind"`
	SubjectType string          `json:"subject_type"`
	SubjectID   string          `json:"subject_id"`
	RunID       string          `json:"run_id,omitempty"`
	Details     json.RawMessage `json:"details"`
	PrevHash    string          `json:"prev_hash,omitempty"`
	Hash        string          `json:"hash,omitempty"`
}

// LineOf converts an event for export.
func LineOf(e *store.AuditEvent) Line {
	l := Line{ID: e.ID, Seq: e.Seq, At: e.At.UTC(), Actor: e.Actor, Kind: e.Kind, SubjectType: e.SubjectType,
		SubjectID: e.SubjectID, Details: e.Details, PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash)}
	if e.RunID != nil {
		l.RunID = *e.RunID
	}
	return l
}

// NeutralizeCell makes a CSV cell inert in a spreadsheet. Actors, subjects
// and rule names can come from people outside (an email typed at sign-in, a
// model's output), and a spreadsheet runs a cell that starts with = + - @ (or
// a tab or carriage return before one) as a formula. Such a cell gets a
// leading single quote. A cell that already starts with a quote gets one more,
// so the original is always the cell with one leading quote removed, and a
// reader can still verify the chain from the export.
func NeutralizeCell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r', '\'':
		return "'" + s
	}
	return s
}

// Export streams the filtered events, newest first (the history page's
// order), as CSV or JSON Lines. flush, when not nil, is called every few
// hundred rows so that a download starts at once. Memory stays constant.
func Export(ctx context.Context, db store.DBTX, f store.AuditFilter, format string, w io.Writer, flush func()) (int, error) {
	n := 0
	tick := func() {
		n++
		if flush != nil && n%500 == 0 {
			flush()
		}
	}
	switch format {
	case CSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(CSVHeader); err != nil {
			return 0, err
		}
		err := store.AuditStream(ctx, db, f, 0, 0, func(e *store.AuditEvent) error {
			var d Facets
			_ = json.Unmarshal(e.Details, &d)
			l := LineOf(e)
			seq := ""
			if e.Seq > 0 {
				seq = strconv.FormatInt(e.Seq, 10)
			}
			row := []string{strconv.FormatInt(e.ID, 10), seq, l.At.Format(time.RFC3339Nano), e.Actor, e.Kind,
				e.SubjectType, e.SubjectID, l.RunID, string(d.Verdict), d.Workflow, d.Rule, string(d.Tier), e.DetailsText, l.PrevHash, l.Hash}
			for i := range row {
				row[i] = NeutralizeCell(row[i])
			}
			if err := cw.Write(row); err != nil {
				return err
			}
			tick()
			if n%500 == 0 {
				cw.Flush()
			}
			return cw.Error()
		})
		cw.Flush()
		if err == nil {
			err = cw.Error()
		}
		return n, err
	case JSONL:
		enc := json.NewEncoder(w)
		err := store.AuditStream(ctx, db, f, 0, 0, func(e *store.AuditEvent) error {
			if err := enc.Encode(LineOf(e)); err != nil {
				return err
			}
			tick()
			return nil
		})
		return n, err
	}
	return 0, fmt.Errorf("unknown export format %q (want csv or jsonl)", format)
}
