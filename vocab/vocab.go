// Package vocab is the words every layer shares: tiers, roles, the statuses
// of runs, requests, steps and batches, and verdicts. Each is a string type
// with its constants, a list for menus and validation, and the methods that
// give the words their meaning, so that the console, the engine, the policy
// and the database cannot drift apart.
//
// The package imports nothing of ours, so that every package, policy
// included, may import it. The values are the ones the database stores; the
// migrations' CHECK constraints list the same values (a test in
// internal/store compares them). Some SQL statements and partial indexes
// spell a value as a literal ('pending', 'explicit'): renaming a value means
// a migration and a search of internal/store and migrations/ for it.
package vocab

import (
	"slices"
	"strings"
)

// Tier is how much human attention an action gets.
type Tier string

// The three tiers, from least to most attention.
const (
	TierAuto     Tier = "auto"
	TierBatched  Tier = "batched"
	TierExplicit Tier = "explicit"
)

// Tiers lists every tier from least to most attention.
func Tiers() []Tier { return []Tier{TierAuto, TierBatched, TierExplicit} }

// Valid reports whether t is one of the tiers.
func (t Tier) Valid() bool { return slices.Contains(Tiers(), t) }

// Rank orders tiers by the attention they get: auto 0 < batched 1 <
// explicit 2. An unknown tier ranks as explicit, so that it is never taken
// for a looser one.
func (t Tier) Rank() int {
	switch t {
	case TierAuto:
		return 0
	case TierBatched:
		return 1
	default:
		return 2
	}
}

// StricterThan reports whether t asks for more attention than o: an edit
// that moves an action to a stricter tier may not be decided alone.
func (t Tier) StricterThan(o Tier) bool { return t.Rank() > o.Rank() }

// Role is what a console user may do.
type Role string

// The roles, from least to most rights.
const (
	RoleViewer   Role = "viewer"
	RoleReviewer Role = "reviewer"
	RoleApprover Role = "approver"
	RoleAdmin    Role = "admin"
)

// Roles lists every role from least to most rights.
func Roles() []Role { return []Role{RoleViewer, RoleReviewer, RoleApprover, RoleAdmin} }

// Valid reports whether r is one of the roles.
func (r Role) Valid() bool { return slices.Contains(Roles(), r) }

// CanDecide reports whether the role may decide anything at all: every role
// but viewer (a rule's roles may narrow it further).
func (r Role) CanDecide() bool { return r.Valid() && r != RoleViewer }

// RunStatus is where a run is in its life.
type RunStatus string

// The run statuses. internal/workflow/status.go says which may follow which.
const (
	RunQueued       RunStatus = "queued"
	RunRunning      RunStatus = "running"
	RunWaitingHuman RunStatus = "waiting_human"
	RunRetrying     RunStatus = "retrying"
	// RunSleeping: parked until a durable timer (Sleep, SleepUntil) is due,
	// holding no worker and no running job.
	RunSleeping RunStatus = "sleeping"
	// RunWaitingEvent: parked until an external event (WaitEvent) arrives or
	// its timeout passes.
	RunWaitingEvent RunStatus = "waiting_event"
	RunFailed       RunStatus = "failed"
	RunCompleted    RunStatus = "completed"
	RunRejected     RunStatus = "rejected"
	RunCancelled    RunStatus = "cancelled"
	// RunCompensated: the run failed, was rejected or was cancelled after
	// effects that declare an undo, and every undo ran.
	RunCompensated RunStatus = "compensated"
	// RunCompensationFailed: an undo failed; a human must finish the
	// rollback (the run page names the undo).
	RunCompensationFailed RunStatus = "compensation_failed"
)

// RunStatuses lists every run status, in the order a run usually meets them.
func RunStatuses() []RunStatus {
	return []RunStatus{RunQueued, RunRunning, RunWaitingHuman, RunRetrying, RunSleeping, RunWaitingEvent,
		RunCompleted, RunFailed, RunRejected, RunCancelled, RunCompensated, RunCompensationFailed}
}

// Valid reports whether s is one of the run statuses.
func (s RunStatus) Valid() bool { return slices.Contains(RunStatuses(), s) }

// Final reports whether s ends a run: no status may follow it.
func (s RunStatus) Final() bool {
	switch s {
	case RunCompleted, RunFailed, RunRejected, RunCancelled, RunCompensated, RunCompensationFailed:
		return true
	}
	return false
}

// RequestStatus is where an approval request is: pending until decided.
type RequestStatus string

// The request statuses.
const (
	RequestPending          RequestStatus = "pending"
	RequestApproved         RequestStatus = "approved"
	RequestRejected         RequestStatus = "rejected"
	RequestChangesRequested RequestStatus = "changes_requested"
	RequestCancelled        RequestStatus = "cancelled"
)

// RequestStatuses lists every request status.
func RequestStatuses() []RequestStatus {
	return []RequestStatus{RequestPending, RequestApproved, RequestRejected, RequestChangesRequested, RequestCancelled}
}

// Valid reports whether s is one of the request statuses.
func (s RequestStatus) Valid() bool { return slices.Contains(RequestStatuses(), s) }

// Verdict is what a decision says about a request.
type Verdict string

// The verdicts.
const (
	VerdictApprove        Verdict = "approve"
	VerdictReject         Verdict = "reject"
	VerdictEdit           Verdict = "edit"
	VerdictRequestChanges Verdict = "request_changes"
)

// Verdicts lists every verdict.
func Verdicts() []Verdict {
	return []Verdict{VerdictApprove, VerdictReject, VerdictEdit, VerdictRequestChanges}
}

// Valid reports whether v is one of the verdicts.
func (v Verdict) Valid() bool { return slices.Contains(Verdicts(), v) }

// Approves reports whether the action may go ahead: approved, or edited and
// approved.
func (v Verdict) Approves() bool { return v == VerdictApprove || v == VerdictEdit }

// RequestStatus is the status a request takes when decided with v, and ""
// for an unknown verdict.
func (v Verdict) RequestStatus() RequestStatus {
	switch v {
	case VerdictApprove, VerdictEdit:
		return RequestApproved
	case VerdictReject:
		return RequestRejected
	case VerdictRequestChanges:
		return RequestChangesRequested
	}
	return ""
}

// Label is the verdict in words for people: "changes requested" rather than
// request_changes.
func (v Verdict) Label() string {
	switch v {
	case VerdictApprove:
		return "approved"
	case VerdictReject:
		return "rejected"
	case VerdictEdit:
		return "approved with edits"
	case VerdictRequestChanges:
		return "changes requested"
	}
	return string(v)
}

// StepKind is what a recorded step of a run did.
type StepKind string

// The step kinds.
const (
	StepKindStep     StepKind = "step"
	StepKindModel    StepKind = "model"
	StepKindEffect   StepKind = "effect"
	StepKindApproval StepKind = "approval"
	StepKindSleep    StepKind = "sleep" // a durable timer
	StepKindEvent    StepKind = "event" // a wait for an external event
	// StepKindCompensation is the undo of an earlier effect, run when the
	// run failed, was rejected or was cancelled.
	StepKindCompensation StepKind = "compensation"
)

// StepKinds lists every step kind.
func StepKinds() []StepKind {
	return []StepKind{StepKindStep, StepKindModel, StepKindEffect, StepKindApproval, StepKindSleep, StepKindEvent, StepKindCompensation}
}

// Valid reports whether k is one of the step kinds.
func (k StepKind) Valid() bool { return slices.Contains(StepKinds(), k) }

// StepStatus is the outcome of a recorded step.
type StepStatus string

// The step statuses.
const (
	StepCompleted StepStatus = "completed"
	StepFailed    StepStatus = "failed"
	StepWaiting   StepStatus = "waiting"
)

// StepStatuses lists every step status.
func StepStatuses() []StepStatus { return []StepStatus{StepCompleted, StepFailed, StepWaiting} }

// Valid reports whether s is one of the step statuses.
func (s StepStatus) Valid() bool { return slices.Contains(StepStatuses(), s) }

// BatchStatus is where a batch of similar requests is: open while it
// gathers, ready when it may be decided, decided once it was.
type BatchStatus string

// The batch statuses.
const (
	BatchOpen    BatchStatus = "open"
	BatchReady   BatchStatus = "ready"
	BatchDecided BatchStatus = "decided"
)

// BatchStatuses lists every batch status.
func BatchStatuses() []BatchStatus { return []BatchStatus{BatchOpen, BatchReady, BatchDecided} }

// Valid reports whether s is one of the batch statuses.
func (s BatchStatus) Valid() bool { return slices.Contains(BatchStatuses(), s) }

// DeliveryStatus is where a callback delivery is: pending until the
// receiver answers 2xx (delivered) or its attempts run out or its address
// is refused (failed).
type DeliveryStatus string

// The delivery statuses.
const (
	DeliveryPending   DeliveryStatus = "pending"
	DeliveryDelivered DeliveryStatus = "delivered"
	DeliveryFailed    DeliveryStatus = "failed"
)

// DeliveryStatuses lists every delivery status.
func DeliveryStatuses() []DeliveryStatus {
	return []DeliveryStatus{DeliveryPending, DeliveryDelivered, DeliveryFailed}
}

// Valid reports whether s is one of the delivery statuses.
func (s DeliveryStatus) Valid() bool { return slices.Contains(DeliveryStatuses(), s) }

// UnusableCategory says why a completed run's output could not be used
// (a reviewer's or an API client's flag, "completed but unusable").
type UnusableCategory string

// The unusable categories.
const (
	UnusableIncorrect  UnusableCategory = "incorrect"  // wrong facts, wrong answer
	UnusableIncomplete UnusableCategory = "incomplete" // something missing
	UnusableFormat     UnusableCategory = "format"     // malformed, wrong shape or language
	UnusableUnsafe     UnusableCategory = "unsafe"     // harmful, leaks data, off policy
	UnusableIrrelevant UnusableCategory = "irrelevant" // answers another question
	UnusableOther      UnusableCategory = "other"
)

// UnusableCategories lists every unusable category.
func UnusableCategories() []UnusableCategory {
	return []UnusableCategory{UnusableIncorrect, UnusableIncomplete, UnusableFormat, UnusableUnsafe, UnusableIrrelevant, UnusableOther}
}

// Valid reports whether c is one of the unusable categories.
func (c UnusableCategory) Valid() bool { return slices.Contains(UnusableCategories(), c) }

// Join joins values for a message or a usage line: "auto, batched, explicit".
func Join[T ~string](values []T, sep string) string {
	var b strings.Builder
	for i, v := range values {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(string(v))
	}
	return b.String()
}
