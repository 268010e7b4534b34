package policystore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/approval"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// Move is one request that a candidate policy would decide differently: in
// another tier, or in the same tier with other requirements.
type Move struct {
	RequestID string        `json:"request_id"`
	Summary   string        `json:"summary"`
	Workflow  string        `json:"workflow"`
	From      vocab.Tier    `json:"from"`
	To        vocab.Tier    `json:"to"`
	FromRule  string        `json:"from_rule"`
	ToRule    string        `json:"to_rule"`
	Verdict   vocab.Verdict `json:"verdict,omitempty"`
	// Changes are the requirements that differ, tier included.
	Changes []Change `json:"changes"`
	// Looser is set when any change asks less of the humans.
	Looser bool `json:"looser"`
}

// TierCount is how many requests the recorded and candidate policies put in a tier.
type TierCount struct {
	Tier      vocab.Tier `json:"tier"`
	Recorded  int        `json:"recorded"`
	Candidate int        `json:"candidate"`
	MovedIn   int        `json:"moved_in"`
	MovedOut  int        `json:"moved_out"`
	// LoosenedRejected counts requests put in this tier, loosened in any
	// respect, that humans had rejected: what the change would have let through.
	LoosenedRejected int `json:"loosened_rejected"`
}

// Simulation is what replaying history against a candidate policy found.
type Simulation struct {
	Since    time.Time `json:"since"`
	Requests int       `json:"requests"`
	Moved    int       `json:"moved"` // put in another tier
	// Changed counts requests the candidate decides differently in any
	// respect: tier, approvals, roles, deadline, on-timeout or escalation.
	Changed int `json:"changed"`
	// Loosened counts requests of which the candidate asks less in any of
	// those respects (a looser tier, fewer approvals, more roles, ...).
	Loosened int `json:"loosened"`
	// RiskyLoosened counts loosened requests that humans had rejected.
	RiskyLoosened int `json:"risky_loosened"`
	// Loosenings counts loosened requests by what was loosened.
	Loosenings map[Field]int `json:"loosenings"`
	Tiers      []TierCount   `json:"tiers"`
	Examples   []Move        `json:"examples"`
	// ByRule says, per rule of the candidate, what it would have decided.
	ByRule map[string]*RuleOutcome `json:"by_rule"`
}

// RuleOutcome is how many requests of the window one rule of the candidate
// would have decided, by the verdict humans (or the policy) had given them
// ("" while undecided, or cancelled undecided).
type RuleOutcome struct {
	Matched  int                   `json:"matched"`
	Verdicts map[vocab.Verdict]int `json:"verdicts"`
}

// LetThrough is how many of them humans had not approved as proposed:
// rejected, edited or sent back for changes.
func (o RuleOutcome) LetThrough() int {
	return o.Verdicts[vocab.VerdictReject] + o.Verdicts[vocab.VerdictEdit] + o.Verdicts[vocab.VerdictRequestChanges]
}

// maxExamples bounds the examples kept per kind of move.
const maxExamples = 5

// Simulate replays the approval requests recorded since `since` against the
// candidate policy, at the time each was made, and counts what would move.
// It stops when ctx is done (the client left) with ctx's error, and when an
// evaluation exceeds the policy's cost limits with an error wrapping
// policy.ErrCostLimit that names the request and rule: unlike live
// evaluation, which holds such an action for review, a simulation that
// guessed would report numbers that are not what the candidate does.
func Simulate(ctx context.Context, db store.DBTX, candidate *policy.Policy, since time.Time) (*Simulation, error) {
	sim := &Simulation{Since: since, Loosenings: map[Field]int{}, ByRule: map[string]*RuleOutcome{}}
	counts := map[vocab.Tier]*TierCount{}
	for _, t := range []vocab.Tier{vocab.TierExplicit, vocab.TierBatched, vocab.TierAuto} {
		tc := &TierCount{Tier: t}
		counts[t] = tc
		sim.Tiers = append(sim.Tiers, *tc)
	}
	perMove := map[string]int{}
	var risky []Move
	err := store.SimulationRows(ctx, db, since, func(row *store.SimulationRow) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := row.Request
		var a workflow.Action
		if err := json.Unmarshal(r.Action, &a); err != nil {
			return fmt.Errorf("request %s: decode action: %w", r.ID, err)
		}
		// The request's step position is the steps_used the proposal saw,
		// as edit re-evaluation takes it.
		run := &store.Run{Workflow: r.Workflow, BusinessKey: row.BusinessKey, Input: row.RunInput, Attempt: row.RunAttempt}
		usage := approval.Usage{StepsUsed: r.StepSeq, ModelCalls: row.ModelCalls, TokensUsed: row.TokensUsed}
		d, err := policy.EvaluateContext(ctx, candidate, approval.PolicyInput(a, run, usage, r.CreatedAt))
		if err != nil {
			return fmt.Errorf("request %s: %w", r.ID, err)
		}
		sim.Requests++
		o := sim.ByRule[d.Rule]
		if o == nil {
			o = &RuleOutcome{Verdicts: map[vocab.Verdict]int{}}
			sim.ByRule[d.Rule] = o
		}
		o.Matched++
		o.Verdicts[row.Verdict]++
		from, to := counts[r.Tier], counts[d.Tier]
		from.Recorded++
		to.Candidate++
		changes := Compare(r, d)
		if len(changes) == 0 {
			return nil
		}
		sim.Changed++
		if r.Tier != d.Tier {
			sim.Moved++
			from.MovedOut++
			to.MovedIn++
		}
		m := Move{RequestID: r.ID, Summary: r.Summary, Workflow: r.Workflow, From: r.Tier, To: d.Tier,
			FromRule: r.Rule, ToRule: d.Rule, Verdict: row.Verdict, Changes: changes}
		for _, c := range changes {
			if c.Looser {
				if !m.Looser {
					sim.Loosened++
				}
				m.Looser = true
				sim.Loosenings[c.Field]++
			}
		}
		if m.Looser {
			if row.Verdict == vocab.VerdictReject {
				sim.RiskyLoosened++
				to.LoosenedRejected++
				if len(risky) < maxExamples {
					risky = append(risky, m)
				}
				return nil
			}
		}
		key := string(m.From+">"+m.To) + fmt.Sprint(m.Looser)
		if perMove[key] < maxExamples {
			perMove[key]++
			sim.Examples = append(sim.Examples, m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Rejected requests the change would loosen are the ones to look at first.
	sim.Examples = append(risky, sim.Examples...)
	for i := range sim.Tiers {
		sim.Tiers[i] = *counts[sim.Tiers[i].Tier]
	}
	return sim, nil
}
