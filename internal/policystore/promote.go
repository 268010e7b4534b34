package policystore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"gopkg.in/yaml.v3"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// Promoting decisions to rules: where humans approved nearly every one of
// many similar actions (the same rule and action kind), a narrower rule in a
// looser tier is proposed, covering the numeric parameters' observed ranges,
// simulated against the history and, once an admin confirms, activated as a
// new policy version (the narrower rule just before the broad one) or as a
// time-boxed grant that the policy cache splices in the same place.
const (
	// DefaultMinDecided is how many decided actions a proposal needs by default.
	DefaultMinDecided = 50
	// MinMinDecided and MaxMinDecided bound what an admin may ask for.
	MinMinDecided = 5
	MaxMinDecided = 100_000
	// ApprovalRate is the share of decided actions that must have been
	// approved as proposed (not edited) for a proposal.
	ApprovalRate = 0.99
	// FastApproval is the time under which an approval counts as fast: a
	// rule whose approvals are mostly this fast at ApprovalRate or more is
	// flagged as rubber-stamped.
	FastApproval = 5 * time.Second
	// maxRangeParams bounds the numeric parameters a proposal narrows on,
	// and maxParams the parameter names it lets through: actions whose
	// approvals carried more get no proposal (a range left out would let any
	// value through). Each costs about 1,000 of the policy's cost limit.
	maxRangeParams = 4
	maxParams      = 10
	// MaxProposals bounds the proposals listed at once.
	MaxProposals = 20
	// MaxLiveGrants bounds the grants in force: each is one more rule that
	// every evaluation may run.
	MaxLiveGrants = 50
)

// Promotion modes.
const (
	ModeRule  = "rule"
	ModeGrant = "grant"
)

// GrantDurations are the lengths a grant may be given.
func GrantDurations() []time.Duration {
	return []time.Duration{24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour}
}

// ErrPolicyChanged is returned when the active policy, or the evidence a
// proposal was shown with, changed before its activation was confirmed.
var ErrPolicyChanged = errors.New("the policy or its evidence changed since the proposal was shown; review it again")

// ErrTooManyGrants is returned when MaxLiveGrants are already in force.
var ErrTooManyGrants = fmt.Errorf("%d grants are already in force: revoke one or promote a rule into the policy instead", MaxLiveGrants)

// RubberStamped reports whether a rule's human decisions look rubber-stamped:
// at least ApprovalRate of them approved, and most approvals faster than
// FastApproval.
func RubberStamped(s *store.RuleStat) bool {
	d := s.Decided()
	return d > 0 && float64(s.Approved) >= ApprovalRate*float64(d) && s.FastApprovals*2 > s.Approved
}

// Proposal is a narrower rule that the decisions of a window support.
type Proposal struct {
	Rule       string     `json:"rule"` // the broad rule
	ActionKind string     `json:"action_kind"`
	BaseTier   vocab.Tier `json:"base_tier"`
	// Tiers are the tiers it may be promoted to, looser than BaseTier; the
	// first is the one proposed.
	Tiers    []vocab.Tier       `json:"tiers"`
	Decided  int                `json:"decided"`
	Approved int                `json:"approved"`
	Ranges   []store.ParamRange `json:"ranges"`
	// Params are the parameter names the approved actions carried: an
	// action with any other is not covered.
	Params []string `json:"params"`
	// Condition narrows the broad rule: the action kind, the parameter
	// names and the ranges.
	Condition     string    `json:"condition"`
	Since         time.Time `json:"since"`
	PolicyVersion int       `json:"policy_version"`
}

// Rate is the share of the decided actions approved as proposed.
func (p *Proposal) Rate() float64 { return float64(p.Approved) / float64(max(p.Decided, 1)) }

// Proposals finds the (rule, action kind) pairs of stats (RuleStats of the
// window since `since`, its From) that humans decided at least minDecided times and
// approved at ApprovalRate or more, whose rule is in base (the active
// version, without grants) in a human tier, and derives for each the
// narrower condition: the action kind, no parameter that none of the
// approved actions carried, and the range of every numeric parameter they
// carried. A pair whose parameters cannot all be written so gets no proposal.
func Proposals(ctx context.Context, db store.DBTX, base *policy.Policy, stats []*store.RuleStat, since time.Time, minDecided int) ([]*Proposal, error) {
	var out []*Proposal
	var pairs []store.RuleKind
	for _, s := range stats {
		if s.RuleTotal || s.Decided() < minDecided || float64(s.Approved) < ApprovalRate*float64(s.Decided()) {
			continue
		}
		rule := ruleNamed(base, s.Rule)
		if rule == nil || rule.Tier == vocab.TierAuto {
			continue
		}
		out = append(out, &Proposal{Rule: rule.Name, ActionKind: s.ActionKind, BaseTier: rule.Tier, Since: since,
			PolicyVersion: base.Version, Decided: s.Decided(), Approved: s.Approved})
		pairs = append(pairs, store.RuleKind{Rule: rule.Name, ActionKind: s.ActionKind})
		if len(out) == MaxProposals {
			break
		}
	}
	seen, err := store.RuleParamRanges(ctx, db, since, pairs)
	if err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, p := range out {
		for _, t := range []vocab.Tier{vocab.TierBatched, vocab.TierAuto} {
			if p.BaseTier.StricterThan(t) {
				p.Tiers = append(p.Tiers, t)
			}
		}
		var ok bool
		if p.Ranges, p.Params, ok = ranges(seen[store.RuleKind{Rule: p.Rule, ActionKind: p.ActionKind}], p.Approved); !ok {
			continue
		}
		p.Condition = condition(p.ActionKind, p.Ranges, p.Params)
		kept = append(kept, p)
	}
	return kept, nil
}

// Propose regenerates the proposal for one rule and action kind from the
// database, as an activation must: it never takes a condition from a form.
// It returns ErrPolicyChanged when the pair no longer qualifies.
func Propose(ctx context.Context, db store.DBTX, base *policy.Policy, rule, kind string, since time.Time, minDecided int) (*Proposal, error) {
	w, err := store.RuleStats(ctx, db, since, FastApproval, store.MaxStatsRequests)
	if err != nil {
		return nil, err
	}
	for _, s := range w.Stats {
		if s.Rule == rule && s.ActionKind == kind && !s.RuleTotal {
			ps, err := Proposals(ctx, db, base, []*store.RuleStat{s}, w.From, minDecided)
			if err != nil {
				return nil, err
			}
			if len(ps) == 1 {
				return ps[0], nil
			}
			break
		}
	}
	return nil, fmt.Errorf("rule %q and action kind %q: %w", rule, kind, ErrPolicyChanged)
}

// ranges derives, from the parameters the approved actions carried, the
// names a covered action may carry and the range of every parameter that any
// of them carried as a number: required when all of them carried it,
// optional otherwise, and in both cases a number in range when present. It
// reports false when that cannot be written exactly (a name a condition
// cannot quote plainly, a number beyond float64's exact integers, too many
// names or ranges): leaving a parameter out would let any value of it through.
func ranges(seen []store.ParamSeen, approved int) (out []store.ParamRange, names []string, ok bool) {
	if len(seen) > maxParams {
		return nil, nil, false
	}
	for _, s := range seen {
		if !paramName.MatchString(s.Param) || s.Huge > 0 {
			return nil, nil, false
		}
		names = append(names, s.Param)
		if s.Numbers == 0 {
			continue
		}
		if !exact(s.Min) || !exact(s.Max) || len(out) == maxRangeParams {
			return nil, nil, false
		}
		r := s.ParamRange
		r.Optional = s.Count < approved
		out = append(out, r)
	}
	return out, names, true
}

// maxExact is where float64 stops holding every integer: past it, the
// policy (which compares parameters as float64) cannot tell an approved
// amount from a larger one that rounds to it.
const maxExact = 1 << 53

// exact reports whether f can bound a range: below maxExact (2^53 itself is
// where 2^53+1 rounds to).
func exact(f float64) bool { return !math.IsNaN(f) && math.Abs(f) < maxExact }

// paramName is the parameter names a proposal narrows on.
var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,63}$`)

// condition is the CEL that narrows a rule to an action kind, parameters
// named in params and ranges. A parameter that is missing (unless optional)
// or not a number makes it false (the broad rule then decides), never an
// evaluation error.
func condition(kind string, ranges []store.ParamRange, params []string) string {
	parts := []string{"action.kind == " + strconv.Quote(kind)}
	// No other parameter: as many as those of params present (a
	// comprehension over the map would cost too much for the cost limit).
	known := []string{"0"}
	for _, p := range params {
		known = append(known, "("+strconv.Quote(p)+" in action.params ? 1 : 0)")
	}
	parts = append(parts, "action.params.size() == "+strings.Join(known, " + "))
	for _, r := range ranges {
		v := "action.params[" + strconv.Quote(r.Param) + "]"
		in := fmt.Sprintf("type(%s) == double && %s >= %s && %s <= %s", v, v, celDouble(r.Min), v, celDouble(r.Max))
		if r.Optional {
			parts = append(parts, fmt.Sprintf("(!(%s in action.params) || %s)", strconv.Quote(r.Param), in))
		} else {
			parts = append(parts, fmt.Sprintf("%s in action.params && %s", strconv.Quote(r.Param), in))
		}
	}
	return strings.Join(parts, " && ")
}

// celDouble writes f as a CEL double literal.
func celDouble(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eEnN") {
		s += ".0"
	}
	return s
}

func ruleNamed(p *policy.Policy, name string) *policy.Rule {
	for _, r := range p.Rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// ruleOut is a rule as written in a policy document.
type ruleOut struct {
	Name        string     `yaml:"name"`
	Description string     `yaml:"description"`
	When        string     `yaml:"when"`
	Tier        vocab.Tier `yaml:"tier"`
}

// narrowRule is the rule a proposal promotes to tier: the broad rule's
// condition and the narrowing one, and, for a grant, the expiry, which every
// evaluation checks against its own time.
func narrowRule(p *Proposal, base *policy.Rule, name string, tier vocab.Tier, expires *time.Time) ruleOut {
	when := "(" + base.When + ") && " + p.Condition
	// No time in the text: what a review shows must be what its activation,
	// a moment later, regenerates (the window's start is in the audit event).
	desc := fmt.Sprintf("Promoted from decisions: %d of %d %s actions under %q were approved as proposed.",
		p.Approved, p.Decided, p.ActionKind, p.Rule)
	if expires != nil {
		when += " && now < timestamp(" + strconv.Quote(expires.UTC().Format(time.RFC3339Nano)) + ")"
		desc += " Granted until " + expires.UTC().Format(time.RFC3339) + "."
	}
	return ruleOut{Name: name, Description: desc, When: when, Tier: tier}
}

// compileRule loads one rule on its own, with every check a document gets.
func compileRule(r ruleOut) (*policy.Rule, error) {
	src, err := yaml.Marshal(struct {
		Version int       `yaml:"version"`
		Rules   []ruleOut `yaml:"rules"`
	}{1, []ruleOut{r}})
	if err != nil {
		return nil, fmt.Errorf("encode rule: %w", err)
	}
	p, err := policy.Load(src)
	if err != nil {
		return nil, err
	}
	return p.Rules[0], nil
}

// Promotion is a proposal made concrete: what activating it would put in force.
type Promotion struct {
	Proposal *Proposal
	Mode     string
	Tier     vocab.Tier
	Rule     *policy.Rule // the narrower rule
	// Source is the new policy version's document (ModeRule).
	Source string
	// ExpiresAt is when the grant ends (ModeGrant).
	ExpiresAt *time.Time
	// Candidate is the policy in force once activated: the new version or
	// the active one with the grant, each with the live grants.
	Candidate *policy.Policy
	// Text is the narrower rule as YAML, shown to the admin.
	Text string
	// SHA256 identifies what is activated (the new document, or the grant's
	// rule without its expiry), for the confirmation to match.
	SHA256 string
}

// GrantRuleName names the rule a stored grant becomes.
func GrantRuleName(id int64) string { return "grant-" + strconv.FormatInt(id, 10) }

// Promote builds what activating p in mode at tier would put in force. active
// is the stored active version, base its compiled policy and grants the live
// grants. A grant's expiry is now+length. The result is validated: the rule
// and the document load, and a new version differs from the active one only
// by the narrower rule just before the broad one.
func Promote(p *Proposal, active *store.PolicyVersion, base *policy.Policy, grants []*Grant, mode string, tier vocab.Tier, now time.Time, length time.Duration) (*Promotion, error) {
	if !slices.Contains(p.Tiers, tier) {
		return nil, fmt.Errorf("%w: tier %q is not looser than rule %q's %s", store.ErrInvalidInput, tier, p.Rule, p.BaseTier)
	}
	broad := ruleNamed(base, p.Rule)
	if broad == nil || active == nil || active.Version != p.PolicyVersion {
		return nil, ErrPolicyChanged
	}
	pr := &Promotion{Proposal: p, Mode: mode, Tier: tier}
	switch mode {
	case ModeGrant:
		if !slices.Contains(GrantDurations(), length) {
			return nil, fmt.Errorf("%w: a grant lasts one of %v", store.ErrInvalidInput, GrantDurations())
		}
		exp := now.Add(length).UTC().Truncate(time.Second)
		pr.ExpiresAt = &exp
		out := narrowRule(p, broad, "grant (new)", tier, nil)
		sum := sha256.Sum256([]byte(out.When + "\x00" + string(tier)))
		pr.SHA256 = hex.EncodeToString(sum[:])
		out = narrowRule(p, broad, "grant (new)", tier, &exp)
		r, err := compileRule(out)
		if err != nil {
			return nil, fmt.Errorf("the proposed grant does not load: %w", err)
		}
		pr.Rule, pr.Text = r, ruleText(out, "")
		pr.Candidate = WithGrants(base, grants)
		pr.Candidate = splice(pr.Candidate, p.Rule, r)
	case ModeRule:
		name := uniqueName(base, fmt.Sprintf("%s-%s-%s", p.Rule, slug(p.ActionKind), tier))
		out := narrowRule(p, broad, name, tier, nil)
		src, err := insertRule(active.Source, base, p.Rule, out)
		if err != nil {
			return nil, err
		}
		next, err := policy.Load([]byte(src))
		if err != nil {
			return nil, fmt.Errorf("the policy with the proposed rule does not load: %w", err)
		}
		if err := sameButOne(base, next, p.Rule, name); err != nil {
			return nil, err
		}
		next.Version = active.Version + 1 // for display; the store assigns it
		pr.Rule, pr.Source, pr.Text = ruleNamed(next, name), src, ruleText(out, "")
		sum := sha256.Sum256([]byte(src))
		pr.SHA256 = hex.EncodeToString(sum[:])
		pr.Candidate = WithGrants(next, grants)
	default:
		return nil, fmt.Errorf("%w: unknown mode %q (want %s or %s)", store.ErrInvalidInput, mode, ModeRule, ModeGrant)
	}
	return pr, nil
}

// slug makes an action kind fit in a rule name.
func slug(s string) string {
	s = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, s)
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}

func uniqueName(p *policy.Policy, name string) string {
	for i, n := 2, name; ; i++ {
		if ruleNamed(p, n) == nil {
			return n
		}
		n = fmt.Sprintf("%s-%d", name, i)
	}
}

// ruleText is one rule as a block sequence item, indented.
func ruleText(r ruleOut, indent string) string {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	_ = enc.Encode([]ruleOut{r}) // plain strings always encode
	var out strings.Builder
	for _, l := range strings.SplitAfter(b.String(), "\n") {
		if l != "" {
			out.WriteString(indent + l)
		}
	}
	return out.String()
}

// insertRule writes r into src just before the rule named before, as a block
// sequence item at that rule's indentation (above the comment lines that
// introduce it). It refuses a document whose rules are not a block sequence.
func insertRule(src string, base *policy.Policy, before string, r ruleOut) (string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(src), &root); err != nil || len(root.Content) == 0 {
		return "", fmt.Errorf("the active policy does not parse: %v", err)
	}
	var item *yaml.Node
	top := root.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "rules" && top.Content[i+1].Kind == yaml.SequenceNode {
			for j, rn := range top.Content[i+1].Content {
				if j < len(base.Rules) && base.Rules[j].Name == before {
					item = rn
				}
			}
		}
	}
	lines := strings.SplitAfter(src, "\n")
	errShape := fmt.Errorf("%w: the active policy's rule %q is not written as a block list item (\"- name: ...\"): promote it as a grant, or edit the policy by hand", store.ErrInvalidInput, before)
	if item == nil || item.Kind != yaml.MappingNode || item.Line < 1 || item.Line > len(lines) {
		return "", errShape
	}
	line := lines[item.Line-1]
	dash := item.Column - 3 // "- " before the mapping's first key
	if dash < 0 || dash+2 > len(line) || line[dash:dash+2] != "- " || strings.TrimSpace(line[:dash]) != "" {
		return "", errShape
	}
	indent := line[:dash]
	at := item.Line - 1
	for at > 0 {
		prev := lines[at-1]
		if !strings.HasPrefix(prev, indent+"#") {
			break
		}
		at--
	}
	text := ruleText(r, indent) + "\n"
	return strings.Join(lines[:at], "") + text + strings.Join(lines[at:], ""), nil
}

// sameButOne checks that next is base with one rule, named name, inserted
// just before the rule named before, and every other rule unchanged.
func sameButOne(base, next *policy.Policy, before, name string) error {
	if len(next.Rules) != len(base.Rules)+1 {
		return fmt.Errorf("the policy with the proposed rule has %d rules, not %d", len(next.Rules), len(base.Rules)+1)
	}
	j := 0
	for i, r := range next.Rules {
		if r.Name == name {
			if i+1 >= len(next.Rules) || next.Rules[i+1].Name != before {
				return fmt.Errorf("the proposed rule is not just before %q", before)
			}
			continue
		}
		b := base.Rules[j]
		if r.Name != b.Name || r.When != b.When || r.Tier != b.Tier || r.Approvals != b.Approvals {
			return fmt.Errorf("inserting the proposed rule changed rule %q", b.Name)
		}
		j++
	}
	return nil
}

// splice returns p with r just before the rule named before (p unchanged).
func splice(p *policy.Policy, before string, r *policy.Rule) *policy.Policy {
	out := &policy.Policy{Version: p.Version, Source: p.Source, Rules: make([]*policy.Rule, 0, len(p.Rules)+1)}
	for _, pr := range p.Rules {
		if pr.Name == before {
			out.Rules = append(out.Rules, r)
		}
		out.Rules = append(out.Rules, pr)
	}
	return out
}

// Grant is a live grant and the broad rule it narrowed as that rule was in
// the version the grant was made under (nil when that version is gone or no
// longer loads).
type Grant struct {
	*store.Grant
	Granted *policy.Rule
}

// LiveGrants returns the grants in force, each with the rule it narrowed as
// it was when granted. compiled, when not nil, keeps the versions compiled
// between calls (versions never change).
func LiveGrants(ctx context.Context, db store.DBTX, compiled map[int]*policy.Policy) ([]*Grant, error) {
	rows, err := store.GrantListLive(ctx, db)
	if err != nil {
		return nil, err
	}
	if compiled == nil {
		compiled = map[int]*policy.Policy{}
	}
	out := make([]*Grant, 0, len(rows))
	for _, g := range rows {
		p, ok := compiled[g.PolicyVersion]
		if !ok {
			v, err := store.PolicyGet(ctx, db, g.PolicyVersion)
			switch {
			case err == nil:
				p, _ = Compile(v) // nil when it no longer loads: the grant does not apply
			case !errors.Is(err, store.ErrNotFound):
				return nil, err
			}
			compiled[g.PolicyVersion] = p
		}
		var granted *policy.Rule
		if p != nil {
			granted = ruleNamed(p, g.Rule)
		}
		out = append(out, &Grant{Grant: g, Granted: granted})
	}
	return out, nil
}

// sameRule reports whether a and b decide alike: condition, tier, approvals
// and roles.
func sameRule(a, b *policy.Rule) bool {
	return a.When == b.When && a.Tier == b.Tier && a.Approvals == b.Approvals && slices.Equal(a.Roles, b.Roles)
}

// WithGrants returns p with each grant's rule spliced in just before the
// rule it narrows (p itself is unchanged). A grant applies only while that
// rule is in p as it was when granted (condition, tier, approvals, roles)
// and stricter than the grant's tier: the evidence was gathered under that
// rule, so once a new version drops, rewrites, tightens or loosens it, the
// grant has nothing to narrow. The rule's condition is the broad rule's, the
// grant's and `now < expires_at`, so a grant stops applying at its expiry
// whatever the cache holds.
func WithGrants(p *policy.Policy, grants []*Grant) *policy.Policy {
	out := p
	for _, g := range grants {
		broad := ruleNamed(p, g.Rule)
		if broad == nil || g.Granted == nil || !sameRule(broad, g.Granted) || !broad.Tier.StricterThan(g.Tier) ||
			ruleNamed(p, GrantRuleName(g.ID)) != nil { // a rule of the policy has its name: decisions would not say which
			continue
		}
		exp := g.ExpiresAt
		prop := &Proposal{Rule: g.Rule, ActionKind: g.ActionKind, Decided: g.Decided, Approved: g.Approved,
			Since: g.WindowStart, Condition: g.Condition}
		r, err := compileRule(narrowRule(prop, broad, GrantRuleName(g.ID), g.Tier, &exp))
		if err != nil {
			continue // not applying a grant is the safe side: the broad rule decides
		}
		out = splice(out, g.Rule, r)
	}
	return out
}

// Outcome is what the simulation says one rule would have decided: how many
// requests, and what humans had answered them.
func Outcome(sim *Simulation, rule string) RuleOutcome {
	if o := sim.ByRule[rule]; o != nil {
		return *o
	}
	return RuleOutcome{}
}

// ActivateRule activates pr (ModeRule) as a new policy version and records
// the promotion, in one transaction. It returns ErrPolicyChanged when another
// version was activated since the proposal was made.
func ActivateRule(ctx context.Context, pool *pgxpool.Pool, pr *Promotion, sim *Simulation, actor string) (*store.PolicyVersion, error) {
	if pr.Mode != ModeRule {
		return nil, fmt.Errorf("%w: not a rule promotion", store.ErrInvalidInput)
	}
	return store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.PolicyVersion, error) {
		v, err := activate(ctx, tx, []byte(pr.Source), actor, pr.Proposal.PolicyVersion)
		if err != nil {
			return nil, err
		}
		d := promoted(pr, sim)
		d.Version = v.Version
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: actor, Subject: audit.PolicySubject(v.Version), Details: d}); err != nil {
			return nil, err
		}
		return v, nil
	})
}

// ActivateGrant stores pr (ModeGrant) as a grant and records the promotion,
// in one transaction, and tells every process's policy cache.
func ActivateGrant(ctx context.Context, pool *pgxpool.Pool, pr *Promotion, sim *Simulation, actor string) (*store.Grant, error) {
	if pr.Mode != ModeGrant || pr.ExpiresAt == nil {
		return nil, fmt.Errorf("%w: not a grant promotion", store.ErrInvalidInput)
	}
	p := pr.Proposal
	return store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.Grant, error) {
		if err := store.PolicyLock(ctx, tx); err != nil {
			return nil, err
		}
		active, err := store.PolicyGetActive(ctx, tx)
		if err != nil || active.Version != p.PolicyVersion {
			return nil, ErrPolicyChanged
		}
		live, err := store.GrantListLive(ctx, tx)
		if err != nil {
			return nil, err
		}
		if len(live) >= MaxLiveGrants {
			return nil, ErrTooManyGrants
		}
		g, err := store.GrantInsert(ctx, tx, &store.Grant{Rule: p.Rule, ActionKind: p.ActionKind, Tier: pr.Tier,
			Condition: p.Condition, Ranges: p.Ranges, PolicyVersion: p.PolicyVersion, Decided: p.Decided,
			Approved: p.Approved, WindowStart: p.Since, CreatedBy: actor, ExpiresAt: *pr.ExpiresAt})
		if err != nil {
			return nil, err
		}
		d := promoted(pr, sim)
		d.NewRule, d.GrantID, d.ExpiresAt = GrantRuleName(g.ID), g.ID, &g.ExpiresAt
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: actor, Subject: audit.GrantSubject(g.ID), Details: d}); err != nil {
			return nil, err
		}
		return g, notify.Send(ctx, tx, notify.Message{Type: notify.KindPolicy, ID: fmt.Sprint(active.Version)})
	})
}

// RevokeGrant ends a live grant now, audited, and tells every process.
func RevokeGrant(ctx context.Context, pool *pgxpool.Pool, id int64, actor string) (*store.Grant, error) {
	return store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.Grant, error) {
		g, err := store.GrantRevoke(ctx, tx, id, actor)
		if err != nil {
			return nil, err
		}
		if _, err := audit.Append(ctx, tx, audit.Event{Actor: actor, Subject: audit.GrantSubject(g.ID),
			Details: audit.PolicyGrantRevoked{GrantID: g.ID, Rule: g.Rule, ExpiresAt: g.ExpiresAt}}); err != nil {
			return nil, err
		}
		return g, notify.Send(ctx, tx, notify.Message{Type: notify.KindPolicy, ID: "grant-" + fmt.Sprint(g.ID)})
	})
}

func promoted(pr *Promotion, sim *Simulation) audit.PolicyPromoted {
	p := pr.Proposal
	o := Outcome(sim, pr.Rule.Name)
	return audit.PolicyPromoted{Mode: pr.Mode, Rule: p.Rule, NewRule: pr.Rule.Name, ActionKind: p.ActionKind,
		Tier: pr.Tier, When: pr.Rule.When, Decided: p.Decided, Approved: p.Approved, Since: p.Since,
		Matched: o.Matched, LetThrough: o.LetThrough()}
}
