package policy

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	exprpb "google.golang.org/genproto/googleapis/api/expr/v1alpha1"
	"gopkg.in/yaml.v3"

	"github.com/countersign/countersign/vocab"
)

// Problem is one thing wrong with a policy document.
type Problem struct {
	Line    int    // 1-based line in the document, 0 when unknown
	Rule    string // the rule's name, "" for the document as a whole
	Message string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", p.Rule)
	}
	b.WriteString(p.Message)
	return b.String()
}

// LoadError lists every problem found in a document.
type LoadError struct{ Problems []Problem }

func (e *LoadError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

type document struct {
	Version int       `yaml:"version"`
	Rules   []ruleDoc `yaml:"rules"`
}

type ruleDoc struct {
	Name        string       `yaml:"name"`
	Description string       `yaml:"description"`
	When        string       `yaml:"when"`
	Tier        vocab.Tier   `yaml:"tier"`
	Approvals   *int         `yaml:"approvals"`
	Roles       []vocab.Role `yaml:"roles"`
	Deadline    string       `yaml:"deadline"`
	OnTimeout   string       `yaml:"on_timeout"`
	EscalateTo  []vocab.Role `yaml:"escalate_to"`
	Batch       *batchDoc    `yaml:"batch"`
}

type batchDoc struct {
	GroupBy []string `yaml:"group_by"`
	MaxSize int      `yaml:"max_size"`
	MaxWait string   `yaml:"max_wait"`
}

var (
	envOnce sync.Once
	celEnv  *cel.Env
	envErr  error
)

// env is the CEL environment every rule compiles in. `action` and `run` are
// maps (params and input are free-form JSON); checkFields refuses a field
// name they do not have, so a misspelt field fails at load time.
func env() (*cel.Env, error) {
	envOnce.Do(func() {
		celEnv, envErr = cel.NewEnv(
			cel.Variable("action", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("run", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("now", cel.TimestampType),
			ext.Strings(),
		)
	})
	return celEnv, envErr
}

// Load parses, compiles and type-checks a policy document. On any problem it
// returns a *LoadError naming every rule and line at fault.
func Load(src []byte) (*Policy, error) {
	doc, root, err := decode(src)
	if err != nil {
		return nil, err
	}
	ruleLines, keyLines := lines(root)

	e, err := env()
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	l := &loader{env: e}
	if doc.Version != 1 {
		l.add(0, "", "version must be 1, got %d", doc.Version)
	}
	if len(doc.Rules) > MaxRules {
		return nil, &LoadError{Problems: []Problem{{Message: fmt.Sprintf("the policy has %d rules; the limit is %d", len(doc.Rules), MaxRules)}}}
	}
	p := &Policy{Source: src}
	seen := map[string]bool{}
	for i, rd := range doc.Rules {
		line := at(ruleLines, i)
		keyLine := func(key string) int {
			if i < len(keyLines) && keyLines[i][key] > 0 {
				return keyLines[i][key]
			}
			return line
		}
		name := rd.Name
		if name == "" {
			l.add(line, "", "rule %d has no name", i+1)
			name = fmt.Sprintf("#%d", i+1)
		} else if seen[name] {
			l.add(line, name, "duplicate rule name")
		}
		seen[name] = true
		p.Rules = append(p.Rules, l.rule(rd, name, line, keyLine))
	}
	if len(l.problems) > 0 {
		return nil, &LoadError{Problems: l.problems}
	}
	return p, nil
}

// decode reads the YAML document, refusing one that is too large, malformed,
// has unknown fields or numbers that are not whole, with a *LoadError.
func decode(src []byte) (*document, *yaml.Node, error) {
	if len(src) > MaxDocumentBytes {
		return nil, nil, &LoadError{Problems: []Problem{{Message: fmt.Sprintf("the document is %d bytes; the limit is %d (%d KiB)",
			len(src), MaxDocumentBytes, MaxDocumentBytes>>10)}}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(src, &root); err != nil {
		return nil, nil, &LoadError{Problems: []Problem{yamlProblem(err)}}
	}
	// The decoder would truncate 2.9 to 2 and read 0.5 as 0 (the default):
	// numbers are checked on the nodes first.
	if problems := integers(&root); len(problems) > 0 {
		return nil, nil, &LoadError{Problems: problems}
	}
	var doc document
	dec := yaml.NewDecoder(bytes.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, &LoadError{Problems: []Problem{yamlProblem(err)}}
	}
	return &doc, &root, nil
}

// loader gathers every problem of one document while its rules are read, so
// that the author sees them all at once.
type loader struct {
	env      *cel.Env
	problems []Problem
}

func (l *loader) add(line int, rule, format string, args ...any) {
	l.problems = append(l.problems, Problem{Line: line, Rule: rule, Message: fmt.Sprintf(format, args...)})
}

// rule reads one rule; keyLine finds the line of one of its keys.
func (l *loader) rule(rd ruleDoc, name string, line int, keyLine func(key string) int) *Rule {
	r := &Rule{Name: name, When: strings.TrimSpace(rd.When), Description: rd.Description, Tier: rd.Tier, Line: line}
	switch {
	case r.Tier.Valid():
	case r.Tier == "":
		l.add(line, name, "tier is required (auto, batched or explicit)")
	default:
		l.add(line, name, "unknown tier %q (want auto, batched or explicit)", rd.Tier)
	}
	l.when(r, keyLine("when"))
	l.people(r, rd)
	l.timeout(r, rd, keyLine("on_timeout"))
	l.batch(r, rd)
	return r
}

// when compiles the rule's condition.
func (l *loader) when(r *Rule, line int) {
	if r.When == "" {
		l.add(r.Line, r.Name, "when is required (a CEL condition; use `true` to match everything)")
	} else if len(r.When) > MaxExpressionBytes {
		l.add(line, r.Name, "when is %d bytes; the limit is %d: split the condition into several rules", len(r.When), MaxExpressionBytes)
	} else if c, msg := compile(l.env, r.When); msg != "" {
		l.add(line, r.Name, "when: %s", msg)
	} else {
		r.cond = c
	}
}

// people reads who decides: the approvals and the roles, which only the
// human tiers have.
func (l *loader) people(r *Rule, rd ruleDoc) {
	line, name := r.Line, r.Name
	if r.Tier == vocab.TierAuto {
		if rd.Approvals != nil || len(rd.Roles) > 0 || rd.Deadline != "" || rd.OnTimeout != "" || len(rd.EscalateTo) > 0 {
			l.add(line, name, "an auto rule cannot have approvals, roles, deadline, on_timeout or escalate_to")
		}
	}
	r.Approvals = 1
	if rd.Approvals != nil {
		r.Approvals = *rd.Approvals // range checked by integers
	}
	for _, role := range append(slices.Clone(rd.Roles), rd.EscalateTo...) {
		switch {
		case !role.Valid():
			l.add(line, name, "unknown role %q (want one of %s)", role, vocab.Join(vocab.Roles(), ", "))
		case !role.CanDecide():
			// The console lets no viewer decide; a rule that named them
			// would wait for someone who can never answer.
			l.add(line, name, "role %q cannot decide (want one of %s)", role, vocab.Join(deciders(), ", "))
		}
	}
	r.Roles, r.EscalateTo = rd.Roles, rd.EscalateTo
}

// timeout reads the deadline and what happens when it passes; onTimeoutLine
// is the line of the on_timeout key.
func (l *loader) timeout(r *Rule, rd ruleDoc, onTimeoutLine int) {
	line, name := r.Line, r.Name
	if rd.Deadline != "" {
		d, err := parseDuration(rd.Deadline)
		if err != nil {
			l.add(line, name, "deadline: %v", err)
		}
		r.Deadline = d
	}
	switch rd.OnTimeout {
	case "":
		if r.Deadline > 0 {
			r.OnTimeout = TimeoutEscalate
		}
	case TimeoutReject, TimeoutEscalate:
		r.OnTimeout = rd.OnTimeout
	case TimeoutApprove:
		if r.Tier != vocab.TierBatched {
			l.add(line, name, "on_timeout: approve is only allowed for batched rules")
		}
		if r.Approvals > 1 {
			// The deadline decides for the policy as a whole; a rule that
			// asks for several people and then lets time approve alone
			// says two contradicting things.
			l.add(onTimeoutLine, name, "on_timeout: approve cannot be combined with approvals: %d: the deadline would approve alone what the rule says needs %d people (use reject or escalate)", r.Approvals, r.Approvals)
		}
		r.OnTimeout = rd.OnTimeout
	default:
		l.add(line, name, "unknown on_timeout %q (want reject, escalate or approve)", rd.OnTimeout)
	}
	if rd.OnTimeout != "" && rd.Deadline == "" {
		l.add(line, name, "on_timeout needs a deadline")
	}
	if len(rd.EscalateTo) > 0 && r.OnTimeout != TimeoutEscalate {
		l.add(line, name, "escalate_to only applies with on_timeout: escalate")
	}
}

// batch reads how a batched rule groups its requests.
func (l *loader) batch(r *Rule, rd ruleDoc) {
	line, name := r.Line, r.Name
	if rd.Batch != nil && r.Tier != vocab.TierBatched {
		l.add(line, name, "batch only applies to the batched tier")
	}
	if r.Tier != vocab.TierBatched {
		return
	}
	r.Batch = &Batch{GroupBy: []string{"workflow", "action.kind"}, MaxSize: 50, MaxWait: 15 * time.Minute}
	if rd.Batch == nil {
		return
	}
	if len(rd.Batch.GroupBy) > 0 {
		r.Batch.GroupBy = rd.Batch.GroupBy
	}
	for _, k := range r.Batch.GroupBy {
		if !validGroupKey(k) {
			l.add(line, name, "batch.group_by: unknown key %q (want workflow, action.kind, action.target, action.risk, run.business_key or action.params.NAME)", k)
		}
	}
	if rd.Batch.MaxSize != 0 { // range checked by integers; 0 is absent
		r.Batch.MaxSize = rd.Batch.MaxSize
	}
	if rd.Batch.MaxWait != "" {
		d, err := parseDuration(rd.Batch.MaxWait)
		if err != nil {
			l.add(line, name, "batch.max_wait: %v", err)
		}
		r.Batch.MaxWait = d
	}
}

// condition is a compiled `when`.
type condition struct {
	program cel.Program
	// tracked conditions have a cost that grows with the data they read and
	// carry CEL's runtime cost limit; the others cost at most maxCost, which
	// saves the tracking's overhead on every evaluation of the common rule.
	tracked bool
	maxCost uint64
}

// compile returns the rule's condition, or a message saying why it is refused.
func compile(e *cel.Env, expr string) (condition, string) {
	ast, iss := e.Compile(expr)
	if iss.Err() != nil {
		return condition{}, strings.ReplaceAll(iss.Err().Error(), "\n", " ")
	}
	if !ast.OutputType().IsExactType(types.BoolType) && !ast.OutputType().IsExactType(types.DynType) {
		return condition{}, fmt.Sprintf("must be a boolean condition, but is %s", ast.OutputType())
	}
	if msg := checkFields(ast); msg != "" {
		return condition{}, msg
	}
	est, err := e.EstimateCost(ast, sizeEstimator{assumedSize})
	if err != nil {
		return condition{}, fmt.Sprintf("cost estimate: %v", err)
	}
	if est.Max > MaxEstimatedCost {
		return condition{}, fmt.Sprintf("the condition could cost up to %s to evaluate (the limit is %d, assuming lists, maps and strings of up to %d items): avoid nesting comprehensions such as .all() and .exists()",
			costString(est.Max), MaxEstimatedCost, assumedSize)
	}
	// An estimate that does not move when the data grows a thousandfold does
	// not depend on the data: it is a bound the condition cannot exceed.
	huge, err := e.EstimateCost(ast, sizeEstimator{assumedSize * 1000})
	if err != nil {
		return condition{}, fmt.Sprintf("cost estimate: %v", err)
	}
	c := condition{tracked: huge.Max != est.Max, maxCost: est.Max}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if c.tracked {
		opts = append(opts, cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(interruptEvery))
	}
	if c.program, err = e.Program(ast, opts...); err != nil {
		return condition{}, err.Error()
	}
	return c, ""
}

// parseDuration accepts Go durations and whole days ("2d").
func parseDuration(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, perr := strconv.Atoi(days)
		if perr != nil {
			err = perr
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration such as 30m, 4h or 2d", s)
	}
	return d, nil
}

// costString prints an estimate that may be near the top of uint64.
func costString(c uint64) string {
	if c > 1e12 {
		return "more than 10^12"
	}
	return strconv.FormatUint(c, 10)
}

// intRange is the range of an integer field.
type intRange struct{ min, max int64 }

// ruleInts are the integer fields of a rule, by key; "batch" holds max_size.
var ruleInts = map[string]intRange{"approvals": {1, 10}}
var batchInts = map[string]intRange{"max_size": {1, 5000}}

// integers checks every integer field on the parsed nodes: a float, a quoted
// number, a boolean or a value out of range is refused with its line, where
// decoding would silently truncate or default it.
func integers(root *yaml.Node) []Problem {
	var problems []Problem
	check := func(rule, key string, n *yaml.Node, r intRange) {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		var v int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
			problems = append(problems, Problem{Line: n.Line, Rule: rule,
				Message: fmt.Sprintf("%s must be a whole number from %d to %d, got %s", key, r.min, r.max, describe(n))})
			return
		}
		if v < r.min || v > r.max {
			problems = append(problems, Problem{Line: n.Line, Rule: rule,
				Message: fmt.Sprintf("%s must be a whole number from %d to %d, got %d", key, r.min, r.max, v)})
		}
	}
	top := mapping(root)
	if top == nil {
		return nil
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if v := top.Content[i+1]; top.Content[i].Value == "version" && (v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int") {
			problems = append(problems, Problem{Line: v.Line, Message: "version must be 1, got " + describe(v)})
		}
		if top.Content[i].Value != "rules" || top.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for _, rn := range top.Content[i+1].Content {
			if rn.Kind != yaml.MappingNode {
				continue
			}
			name := ""
			for j := 0; j+1 < len(rn.Content); j += 2 {
				if rn.Content[j].Value == "name" {
					name = rn.Content[j+1].Value
				}
			}
			for j := 0; j+1 < len(rn.Content); j += 2 {
				key, val := rn.Content[j].Value, rn.Content[j+1]
				if r, ok := ruleInts[key]; ok {
					check(name, key, val, r)
				}
				if key == "batch" && val.Kind == yaml.MappingNode {
					for k := 0; k+1 < len(val.Content); k += 2 {
						if r, ok := batchInts[val.Content[k].Value]; ok {
							check(name, "batch."+val.Content[k].Value, val.Content[k+1], r)
						}
					}
				}
			}
		}
	}
	return problems
}

// describe shows a refused scalar as it was written, quoted when it was a string.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind != yaml.ScalarNode:
		return "a " + strings.TrimPrefix(n.ShortTag(), "!!")
	case n.ShortTag() == "!!str":
		return strconv.Quote(n.Value)
	case len(n.Value) > 40:
		return n.Value[:40] + "…"
	}
	return n.Value
}

// mapping returns the document's top-level mapping, or nil.
func mapping(root *yaml.Node) *yaml.Node {
	if root == nil || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	return root.Content[0]
}

// lines finds, for each rule, the line it starts on and the line of each of
// its keys' values.
func lines(root *yaml.Node) (rules []int, keys []map[string]int) {
	if root == nil || len(root.Content) == 0 {
		return nil, nil
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "rules" || top.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for _, rn := range top.Content[i+1].Content {
			rules = append(rules, rn.Line)
			at := map[string]int{}
			for j := 0; j+1 < len(rn.Content); j += 2 {
				at[rn.Content[j].Value] = rn.Content[j+1].Line
			}
			keys = append(keys, at)
		}
	}
	return rules, keys
}

func at(s []int, i int) int {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// yamlProblem turns a yaml error ("yaml: line 3: ...") into a Problem.
func yamlProblem(err error) Problem {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = strings.Join(te.Errors, "; ")
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, tail, ok := strings.Cut(rest, ":"); ok {
			if v, err := strconv.Atoi(n); err == nil {
				line, msg = v, strings.TrimSpace(tail)
			}
		}
	}
	if msg == "EOF" {
		msg = "the document is empty"
	}
	return Problem{Line: line, Message: msg}
}

// fields lists what `action` and `run` hold; see Action and Run.
var fields = map[string][]string{
	"action": {"kind", "target", "summary", "params", "risk", "reversible", "estimated_cost"},
	"run":    {"workflow", "business_key", "input", "attempt", "steps_used", "model_calls", "tokens_used"},
}

// checkFields walks a compiled condition and refuses a field of action or run
// that does not exist.
func checkFields(a *cel.Ast) string {
	parsed, err := cel.AstToParsedExpr(a)
	if err != nil {
		return err.Error()
	}
	var msg string
	var walk func(e *exprpb.Expr)
	walk = func(e *exprpb.Expr) {
		if e == nil || msg != "" {
			return
		}
		switch k := e.ExprKind.(type) {
		case *exprpb.Expr_SelectExpr:
			if id := k.SelectExpr.Operand.GetIdentExpr(); id != nil {
				if known, ok := fields[id.Name]; ok && !slices.Contains(known, k.SelectExpr.Field) {
					msg = fmt.Sprintf("%s has no field %q (it has %s)", id.Name, k.SelectExpr.Field, strings.Join(known, ", "))
					return
				}
			}
			walk(k.SelectExpr.Operand)
		case *exprpb.Expr_CallExpr:
			walk(k.CallExpr.Target)
			for _, arg := range k.CallExpr.Args {
				walk(arg)
			}
		case *exprpb.Expr_ListExpr:
			for _, el := range k.ListExpr.Elements {
				walk(el)
			}
		case *exprpb.Expr_StructExpr:
			for _, en := range k.StructExpr.Entries {
				walk(en.GetMapKey())
				walk(en.Value)
			}
		case *exprpb.Expr_ComprehensionExpr:
			c := k.ComprehensionExpr
			walk(c.IterRange)
			walk(c.AccuInit)
			walk(c.LoopCondition)
			walk(c.LoopStep)
			walk(c.Result)
		}
	}
	walk(parsed.GetExpr())
	return msg
}

// deciders lists the roles a rule may name: those that can decide.
func deciders() []vocab.Role {
	var roles []vocab.Role
	for _, r := range vocab.Roles() {
		if r.CanDecide() {
			roles = append(roles, r)
		}
	}
	return roles
}
