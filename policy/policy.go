// Package policy decides, for every action a workflow run proposes, whether it
// is approved automatically (auto), grouped with similar changes for one
// reviewer action (batched), or stopped for individual review (explicit).
//
// A policy is a YAML document of ordered rules whose conditions are CEL
// expressions; the first rule whose condition holds decides, and when none
// does the action is explicit. The package is pure Go: no database, no HTTP.
package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"

	"github.com/countersign/countersign/vocab"
)

// What a rule may do when its deadline passes.
const (
	TimeoutReject   = "reject"
	TimeoutEscalate = "escalate"
	TimeoutApprove  = "approve"
)

// Action is what a run proposes to do. Field names are those CEL sees.
type Action struct {
	Kind          string         `json:"kind"`
	Target        string         `json:"target"`
	Summary       string         `json:"summary"`
	Params        map[string]any `json:"params"`
	Risk          string         `json:"risk"`
	Reversible    bool           `json:"reversible"`
	EstimatedCost float64        `json:"estimated_cost"`
}

// Run is what a rule may know of the run that proposes the action.
type Run struct {
	Workflow    string         `json:"workflow"`
	BusinessKey string         `json:"business_key"`
	Input       map[string]any `json:"input"`
	Attempt     int            `json:"attempt"`
	StepsUsed   int            `json:"steps_used"`
	ModelCalls  int            `json:"model_calls"`
	TokensUsed  int            `json:"tokens_used"`
}

// Input is everything a rule's condition can read: `action`, `run` and `now`.
type Input struct {
	Action Action
	Run    Run
	Now    time.Time
}

// Batch says how batched requests are grouped.
type Batch struct {
	GroupBy []string
	MaxSize int
	MaxWait time.Duration
}

// Decision is the policy's answer for one action.
type Decision struct {
	Tier       vocab.Tier    `json:"tier"`
	Rule       string        `json:"rule"`
	Reason     string        `json:"reason"`
	Approvals  int           `json:"approvals"`
	Roles      []vocab.Role  `json:"roles,omitempty"`
	Deadline   time.Duration `json:"deadline,omitempty"`
	OnTimeout  string        `json:"on_timeout,omitempty"`
	EscalateTo []vocab.Role  `json:"escalate_to,omitempty"`
	BatchKey   string        `json:"batch_key,omitempty"`
	Batch      *Batch        `json:"-"`
	// Uncertain is set when a rule's condition could not be evaluated: the
	// decision then holds the strictest requirements of that rule and of the
	// rule that matched after it (or the default), so it is never looser than
	// what a complete evaluation could have given.
	Uncertain bool `json:"uncertain,omitempty"`
}

// RequiredApprovals returns the approvals a request opened under d records:
// at least one, since the one approval of an auto decision is the policy's
// own. Whatever compares a decision with a recorded request must use it, or
// an auto rule reads as "1 -> 0 approvals" against itself.
func (d Decision) RequiredApprovals() int { return max(d.Approvals, 1) }

// Rule is one compiled rule of a policy.
type Rule struct {
	Name        string
	When        string
	Description string
	Tier        vocab.Tier
	Approvals   int
	Roles       []vocab.Role
	Deadline    time.Duration
	OnTimeout   string
	EscalateTo  []vocab.Role
	Batch       *Batch
	Line        int

	cond condition
}

// Policy is a loaded, compiled, type-checked policy document.
type Policy struct {
	Version int // the database version, 0 when not stored
	Rules   []*Rule
	Source  []byte
}

// NoMatchRule names the implicit last rule: nothing matched, review it.
const NoMatchRule = "default-explicit"

// Default is the policy in force before any is activated: every action is
// reviewed explicitly.
func Default() *Policy { return &Policy{} }

// Evaluate applies p to in: the first rule whose condition is true decides. A
// condition that cannot be evaluated (a missing field, a wrong type, a cost
// over CostLimit) makes the action explicit with that reason; it never lets
// an action through.
func Evaluate(p *Policy, in Input) (Decision, error) {
	d, _ := EvaluateContext(context.Background(), p, in)
	return d, nil
}

// EvaluateContext is Evaluate that stops when ctx is done. When a rule or the
// whole evaluation exceeds its cost limit it returns the explicit decision
// Evaluate would and an error wrapping ErrCostLimit; when ctx is done, that
// decision and ctx's error. Callers that must stop on either (a simulation)
// check the error; live evaluation takes the fail-safe decision.
func EvaluateContext(ctx context.Context, p *Policy, in Input) (Decision, error) {
	if p == nil {
		p = Default()
	}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	vars := map[string]any{"action": in.Action.vars(), "run": in.Run.vars(), "now": in.Now}
	var spent uint64
	var failed []*Rule
	var why []string
	var stop error
	for i, r := range p.Rules {
		matched, err, halt := r.eval(ctx, vars, &spent)
		if halt != nil {
			// Out of budget or cancelled: none of the rules left can be
			// tried, and any of them might have matched.
			failed = append(failed, p.Rules[i:]...)
			why = append(why, fmt.Sprintf("rule %q could not be evaluated (%v)", r.Name, err))
			stop = halt
			break
		}
		if err != nil {
			// A condition that fails (a missing field, its own cost limit)
			// might have held: note it and go on, so that a stricter rule
			// further down still applies. Stopping here would let whoever
			// shapes the input (a model, an editor) choose this rule's
			// requirements over a later rule's by breaking this condition.
			failed = append(failed, r)
			why = append(why, fmt.Sprintf("rule %q could not be evaluated (%v)", r.Name, err))
			if isCostLimit(err) && stop == nil {
				stop = fmt.Errorf("rule %q: %w", r.Name, ErrCostLimit)
			}
			continue
		}
		if matched {
			return strictest(r.decide(in), failed, why), stop
		}
	}
	none := Decision{Tier: vocab.TierExplicit, Rule: NoMatchRule, Approvals: 1,
		Reason: "no rule matched; actions are reviewed explicitly by default"}
	return strictest(none, failed, why), stop
}

// eval evaluates r's condition, adding its cost to spent. err says why the
// condition has no value; halt is set when the evaluation as a whole must stop
// (its context is done, or the conditions together cost too much).
func (r *Rule) eval(ctx context.Context, vars map[string]any, spent *uint64) (matched bool, err, halt error) {
	var out ref.Val
	if r.cond.tracked {
		var det *cel.EvalDetails
		out, det, err = r.cond.program.ContextEval(ctx, vars)
		if det != nil && det.ActualCost() != nil {
			*spent += *det.ActualCost()
		}
	} else {
		out, _, err = r.cond.program.Eval(vars)
		*spent += r.cond.maxCost
	}
	switch {
	case ctx.Err() != nil:
		if err == nil {
			err = context.Cause(ctx)
		}
		return false, err, fmt.Errorf("rule %q: %w", r.Name, context.Cause(ctx))
	case err == nil && *spent > EvaluationCostLimit:
		err = fmt.Errorf("the policy's conditions together cost more than %d", EvaluationCostLimit)
		return false, err, fmt.Errorf("rule %q: the conditions so far: %w", r.Name, ErrCostLimit)
	case err != nil:
		return false, err, nil
	}
	b, ok := out.Value().(bool)
	return ok && b, nil, nil
}

// strictest returns d when no rule failed; otherwise d made explicit with the
// most approvals and the narrowest roles of d and every failed rule, so that
// the answer is at least as strict as any of them would have been.
func strictest(d Decision, failed []*Rule, why []string) Decision {
	if len(failed) == 0 {
		return d
	}
	d.Tier, d.Batch, d.BatchKey, d.Uncertain = vocab.TierExplicit, nil, "", true
	if d.OnTimeout == TimeoutApprove {
		d.OnTimeout = TimeoutEscalate // an explicit request is never approved by its deadline
	}
	roles := mayDecide(d.Roles)
	d.Approvals = max(d.Approvals, 1)
	for _, r := range failed {
		d.Approvals = max(d.Approvals, r.Approvals)
		roles = slices.DeleteFunc(roles, func(role vocab.Role) bool { return !slices.Contains(mayDecide(r.Roles), role) })
	}
	switch {
	case len(roles) == 0:
		d.Roles = []vocab.Role{vocab.RoleAdmin} // no role every rule allows: only admins, who may decide anything
	case slices.Equal(roles, mayDecide(nil)):
		d.Roles = nil
	default:
		d.Roles = roles
	}
	d.Reason = strings.Join(why, "; ") + fmt.Sprintf("; held for explicit review with the strictest requirements of those rules and %q", d.Rule)
	// The request names the first rule that could not be judged: it is the
	// one a reader must look at.
	d.Rule = failed[0].Name
	return d
}

// mayDecide lists the roles a rule's roles let decide: a rule that names none
// leaves it to reviewers and approvers (admins may always decide).
func mayDecide(roles []vocab.Role) []vocab.Role {
	if len(roles) == 0 {
		return []vocab.Role{vocab.RoleReviewer, vocab.RoleApprover}
	}
	return slices.Clone(roles)
}

// isCostLimit reports whether err is CEL's cancellation for a spent cost limit.
func isCostLimit(err error) bool {
	var ce interpreter.EvalCancelledError
	return errors.As(err, &ce) && ce.Cause == interpreter.CostLimitExceeded
}

func (r *Rule) decide(in Input) Decision {
	d := Decision{
		Tier: r.Tier, Rule: r.Name, Approvals: r.Approvals, Roles: r.Roles,
		Deadline: r.Deadline, OnTimeout: r.OnTimeout, EscalateTo: r.EscalateTo,
	}
	d.Reason = r.Description
	if d.Reason == "" {
		d.Reason = fmt.Sprintf("rule %q matched: %s", r.Name, r.When)
	}
	if r.Tier == vocab.TierAuto {
		d.Approvals = 0
	}
	if r.Tier == vocab.TierBatched {
		d.Batch = r.Batch
		d.BatchKey = batchKey(r.Batch.GroupBy, in)
	}
	return d
}

// batchKey joins the values of the group_by keys into one stable string.
func batchKey(keys []string, in Input) string {
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+groupValue(k, in))
	}
	return strings.Join(parts, ";")
}

func groupValue(key string, in Input) string {
	switch key {
	case "workflow", "run.workflow":
		return in.Run.Workflow
	case "run.business_key":
		return in.Run.BusinessKey
	case "action.kind":
		return in.Action.Kind
	case "action.target":
		return in.Action.Target
	case "action.risk":
		return in.Action.Risk
	}
	if name, ok := strings.CutPrefix(key, "action.params."); ok {
		if v, ok := in.Action.Params[name]; ok {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// validGroupKey reports whether key names something batchKey can read.
func validGroupKey(key string) bool {
	switch key {
	case "workflow", "run.workflow", "run.business_key", "action.kind", "action.target", "action.risk":
		return true
	}
	name, ok := strings.CutPrefix(key, "action.params.")
	return ok && name != ""
}

func (a *Action) vars() map[string]any {
	params := a.Params
	if params == nil {
		params = map[string]any{}
	}
	return map[string]any{"kind": a.Kind, "target": a.Target, "summary": a.Summary, "params": params,
		"risk": a.Risk, "reversible": a.Reversible, "estimated_cost": a.EstimatedCost}
}

func (r *Run) vars() map[string]any {
	input := r.Input
	if input == nil {
		input = map[string]any{}
	}
	return map[string]any{"workflow": r.Workflow, "business_key": r.BusinessKey, "input": input,
		"attempt": r.Attempt, "steps_used": r.StepsUsed, "model_calls": r.ModelCalls, "tokens_used": r.TokensUsed}
}
