package templates

import "slices"

// Class names built from a value come from these closed sets only: a value
// outside its set (a model's risk "high x-injected", a status a newer
// version added) gets the class "unknown", and its text is shown escaped.
var (
	tierClasses    = []string{"explicit", "batched", "auto"}
	riskClasses    = []string{"low", "medium", "high"}
	runClasses     = []string{"queued", "running", "waiting_human", "retrying", "failed", "completed", "rejected", "cancelled"}
	requestClasses = []string{"pending", "approved", "rejected", "changes_requested", "cancelled"}
	stepClasses    = []string{"completed", "failed", "waiting"}
	verdictClasses = []string{"approve", "reject", "edit", "request_changes"}
)

// closed returns v when set holds it, and "unknown" otherwise.
func closed(set []string, v string) string {
	if slices.Contains(set, v) {
		return v
	}
	return "unknown"
}

func tierClass(tier string) string      { return "tier-" + closed(tierClasses, tier) }
func riskClass(risk string) string      { return "risk-" + closed(riskClasses, risk) }
func statusClass(status string) string  { return "status-" + closed(runClasses, status) }
func requestClass(status string) string { return "request-" + closed(requestClasses, status) }
func stepClass(status string) string    { return "step-" + closed(stepClasses, status) }
func verdictKey(verdict string) string  { return closed(verdictClasses, verdict) }
func tierKey(tier string) string        { return closed(tierClasses, tier) }
