package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"
)

// RuleStat is what the requests a rule decided in a window became, for one
// action kind, or for all of the rule's kinds when RuleTotal is set. The
// human figures (Undecided, verdicts, times) leave out the auto tier.
type RuleStat struct {
	Rule       string
	ActionKind string // "" on a rule's total
	RuleTotal  bool
	Volume     int // every request, auto included
	Auto       int
	Undecided  int
	Approved   int // by a person
	// DeadlineApprovals are the approvals the policy made when a batched
	// rule's deadline passed (on_timeout: approve): decided, not approved
	// by anyone.
	DeadlineApprovals int
	Rejected          int
	Edited            int
	// ChangesRequested counts the request_changes verdicts.
	ChangesRequested int
	// MedianDecision is the median time from request to decision of every
	// human decision; MedianApproval that of the approvals alone.
	MedianDecision time.Duration
	MedianApproval time.Duration
	// FastApprovals counts approvals decided within the fast threshold.
	FastApprovals int
}

// Decided is the number of requests a human (or a deadline) decided.
func (s *RuleStat) Decided() int {
	return s.Approved + s.DeadlineApprovals + s.Rejected + s.Edited + s.ChangesRequested
}

// MaxRuleStats bounds the rows RuleStats returns.
const MaxRuleStats = 500

// MaxStatsRequests is the bound callers give RuleStats on the requests it
// reads: a window of a busy deployment is cut to its latest requests, so
// that the statistics cost the same however large the history grows.
const MaxStatsRequests = 200_000

// RuleStatsWindow is what RuleStats found.
type RuleStatsWindow struct {
	Stats []*RuleStat
	// From is where the statistics start: the window's start, or later when
	// the window held more than the requests it may read (Capped).
	From   time.Time
	Capped bool
	// Truncated says that rows past MaxRuleStats were left out.
	Truncated bool
}

// RuleStats returns, per rule and per rule and action kind, what the requests
// made since `since` (at most the latest maxRequests) became, rules in
// name order with each rule's total first; fast is the threshold under which
// an approval counts as fast.
func RuleStats(ctx context.Context, db DBTX, since time.Time, fast time.Duration, maxRequests int) (*RuleStatsWindow, error) {
	w := &RuleStatsWindow{From: since}
	skip := int32(min(max(maxRequests, 1), math.MaxInt32)) //nolint:gosec // bounded
	start, err := queries.RequestWindowStart(ctx, db, dbsqlc.RequestWindowStartParams{Since: since, Skip: skip})
	switch err = interpret(err); {
	case err == nil:
		// That request is one too many: start just after it.
		w.From, w.Capped = start.Add(time.Microsecond), true
	case !errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("rule stats window: %w", err)
	}
	rows, err := queries.RuleStats(ctx, db, dbsqlc.RuleStatsParams{Since: w.From, FastMicros: fast.Microseconds(), MaxRows: MaxRuleStats + 1})
	if err != nil {
		return nil, fmt.Errorf("rule stats: %w", interpret(err))
	}
	if len(rows) > MaxRuleStats {
		rows, w.Truncated = rows[:MaxRuleStats], true
	}
	seconds := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)).Round(time.Millisecond) }
	w.Stats = convertAll(rows, func(r *dbsqlc.RuleStatsRow) *RuleStat {
		return &RuleStat{Rule: r.Rule, ActionKind: r.ActionKind, RuleTotal: r.RuleTotal, Volume: r.Volume, Auto: r.Auto,
			Undecided: r.Undecided, Approved: r.Approved, DeadlineApprovals: r.DeadlineApprovals, Rejected: r.Rejected, Edited: r.Edited,
			ChangesRequested: r.ChangesRequested, MedianDecision: seconds(r.MedianSeconds),
			MedianApproval: seconds(r.MedianApproveSeconds), FastApprovals: r.FastApprovals}
	})
	return w, nil
}

// ParamSeen is one parameter of the approved actions of a rule and kind: in
// how many it appears (Count), in how many as a number (Numbers) and as a
// number too large to compare as a float (Huge), and the range of the other
// numbers (zero when there are none).
type ParamSeen struct {
	ParamRange
	Count   int
	Numbers int
	Huge    int
}

// RuleKind is a rule and an action kind.
type RuleKind struct{ Rule, ActionKind string }

// RuleParamRanges returns, for each of the pairs, the parameters (of any
// type, with the range of their numeric values) of the actions humans approved unedited under that rule for that kind since
// `since`, by name, in one pass over the window. A pair without any is absent.
func RuleParamRanges(ctx context.Context, db DBTX, since time.Time, pairs []RuleKind) (map[RuleKind][]ParamSeen, error) {
	out := map[RuleKind][]ParamSeen{}
	if len(pairs) == 0 {
		return out, nil
	}
	p := dbsqlc.RuleParamRangesParams{Since: since}
	for _, rk := range pairs {
		p.Rules, p.Kinds = append(p.Rules, rk.Rule), append(p.Kinds, rk.ActionKind)
	}
	rows, err := queries.RuleParamRanges(ctx, db, p)
	if err != nil {
		return nil, fmt.Errorf("rule parameter ranges: %w", interpret(err))
	}
	for _, r := range rows {
		k := RuleKind{r.Rule, r.ActionKind}
		out[k] = append(out[k], ParamSeen{ParamRange: ParamRange{Param: r.Param, Min: r.MinValue, Max: r.MaxValue}, Count: r.N,
			Numbers: r.Numbers, Huge: r.Huge})
	}
	return out, nil
}
