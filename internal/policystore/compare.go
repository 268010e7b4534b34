package policystore

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// Field names one requirement a rule decides.
type Field string

// The requirements a simulation compares, in the order they are shown.
const (
	FieldTier       Field = "tier"
	FieldApprovals  Field = "approvals"
	FieldRoles      Field = "roles"
	FieldDeadline   Field = "deadline"
	FieldOnTimeout  Field = "on_timeout"
	FieldEscalateTo Field = "escalate_to"
)

// Fields lists every compared requirement.
func Fields() []Field {
	return []Field{FieldTier, FieldApprovals, FieldRoles, FieldDeadline, FieldOnTimeout, FieldEscalateTo}
}

// Change is one requirement that a candidate decides differently from what
// was recorded for a request.
type Change struct {
	Field Field  `json:"field"`
	From  string `json:"from"`
	To    string `json:"to"`
	// Looser is set when the candidate asks less of the humans here.
	Looser bool `json:"looser"`
}

// deadlineSlack absorbs the gap between the clock that set a request's
// deadline (the engine's) and the one that stamped its creation (the
// database's), so that an unchanged deadline does not read as changed.
const deadlineSlack = 5 * time.Second

// Compare returns every requirement in which d differs from what was recorded
// for r, each marked when it is a loosening:
//   - tier: a less strict tier;
//   - approvals: fewer;
//   - roles: a role may decide that could not (no roles means every role
//     that may decide at all);
//   - deadline: when the timeout approves, a deadline that comes sooner or
//     appears; otherwise one that comes later or disappears, since it is
//     what forces a decision;
//   - on_timeout: one that lets the action through (approve) where it did not;
//   - escalate_to: escalation reaches a role it did not, or none where some.
func Compare(r *store.Request, d policy.Decision) []Change {
	var out []Change
	add := func(f Field, from, to string, looser bool) {
		if from != to {
			out = append(out, Change{Field: f, From: from, To: to, Looser: looser})
		}
	}
	add(FieldTier, string(r.Tier), string(d.Tier), r.Tier.StricterThan(d.Tier))
	// The request recorded the normalized count (an auto request records
	// the policy's one approval), so the candidate's is normalized alike.
	need := d.RequiredApprovals()
	add(FieldApprovals, fmt.Sprint(r.ApprovalsRequired), fmt.Sprint(need), need < r.ApprovalsRequired)
	add(FieldRoles, roleList(r.Roles), roleList(d.Roles), widens(r.Roles, d.Roles))

	var was time.Duration
	if r.Deadline != nil {
		was = r.Deadline.Sub(r.CreatedAt)
		if diff := was - d.Deadline; diff < deadlineSlack && diff > -deadlineSlack && d.Deadline > 0 {
			was = d.Deadline
		}
	}
	approves := d.OnTimeout == "approve"
	var later bool
	switch {
	case was == d.Deadline:
	case approves:
		later = d.Deadline > 0 && (was == 0 || d.Deadline < was)
	default:
		later = d.Deadline == 0 || (was > 0 && d.Deadline > was)
	}
	add(FieldDeadline, duration(was), duration(d.Deadline), later)
	add(FieldOnTimeout, orNone(r.OnTimeout), orNone(d.OnTimeout), approves && r.OnTimeout != "approve")
	add(FieldEscalateTo, roleList(r.EscalateTo), roleList(d.EscalateTo),
		(len(r.EscalateTo) > 0 && len(d.EscalateTo) == 0) || (len(d.EscalateTo) > 0 && len(r.EscalateTo) > 0 && widens(r.EscalateTo, d.EscalateTo)))
	return out
}

// widens reports whether the roles in to let someone decide whom from did
// not; an empty list allows every role that may decide.
func widens(from, to []vocab.Role) bool {
	if len(from) == 0 {
		return false
	}
	if len(to) == 0 {
		return true
	}
	for _, r := range to {
		if !slices.Contains(from, r) {
			return true
		}
	}
	return false
}

func roleList(rs []vocab.Role) string {
	if len(rs) == 0 {
		return "any"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}

func duration(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
