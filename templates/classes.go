package templates

import (
	"slices"

	"github.com/countersign/countersign/vocab"
)

// Class names built from a value come from these closed sets only: a value
// outside its set (a model's risk "high x-injected", a status a newer
// version added) gets the class "unknown", and its text is shown escaped.
// The sets of statuses, tiers and verdicts are the vocabulary's own lists.
var riskClasses = []string{"low", "medium", "high"}

// closed returns v when set holds it, and "unknown" otherwise.
func closed[T ~string](set []T, v T) string {
	if slices.Contains(set, v) {
		return string(v)
	}
	return "unknown"
}

func tierClass(tier vocab.Tier) string { return "tier-" + closed(vocab.Tiers(), tier) }
func riskClass(risk string) string     { return "risk-" + closed(riskClasses, risk) }
func statusClass(status vocab.RunStatus) string {
	return "status-" + closed(vocab.RunStatuses(), status)
}
func requestClass(status vocab.RequestStatus) string {
	return "request-" + closed(vocab.RequestStatuses(), status)
}
func stepClass(status vocab.StepStatus) string { return "step-" + closed(vocab.StepStatuses(), status) }
func verdictKey(verdict vocab.Verdict) string  { return closed(vocab.Verdicts(), verdict) }
func tierKey(tier vocab.Tier) string           { return closed(vocab.Tiers(), tier) }
