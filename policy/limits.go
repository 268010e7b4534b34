package policy

import (
	"errors"

	"github.com/google/cel-go/checker"
)

// Limits on what a policy may cost. A policy is written by an admin but can be
// simulated by approvers, and every action of every run is evaluated against
// it, so neither its size nor one evaluation may grow without bound.
const (
	// MaxDocumentBytes bounds a policy document.
	MaxDocumentBytes = 256 << 10
	// MaxRules bounds the rules of one policy.
	MaxRules = 500
	// MaxExpressionBytes bounds one rule's `when`.
	MaxExpressionBytes = 4 << 10
	// MaxEstimatedCost bounds a rule's worst-case cost as CEL estimates it at
	// load, assuming every list, map and string an action or run carries holds
	// at most assumedSize items: one comprehension over the action's data
	// passes, nested ones do not.
	MaxEstimatedCost = 20_000
	// CostLimit stops one rule's evaluation. It is low because cel-go's cost
	// tracking grows quadratically with a comprehension's iterations (its
	// stack of observed values is searched on every step): 20,000 stops a
	// scan of a huge list after about 0.2 s of CPU here, 100,000 took 3 s.
	CostLimit = 20_000
	// EvaluationCostLimit stops one evaluation of all rules, so that 500
	// rules each just under CostLimit cannot add up. Rules whose cost does
	// not depend on the data count their estimate.
	EvaluationCostLimit = 100_000

	assumedSize = 1000
	// interruptEvery is how many comprehension iterations pass between two
	// checks of the context.
	interruptEvery = 100
)

// ErrCostLimit is returned by EvaluateContext when a rule's condition, or the
// policy as a whole, exceeded its cost limit.
var ErrCostLimit = errors.New("policy evaluation exceeded its cost limit")

// sizeEstimator tells CEL's static estimate how large the free-form data in
// `action` and `run` may be; without it every comprehension is unbounded.
type sizeEstimator struct{ max uint64 }

func (s sizeEstimator) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: s.max}
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}
