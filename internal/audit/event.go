package audit

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/countersign/countersign/internal/store"

	"github.com/countersign/countersign/vocab"
)

// Kind names what an audit event records, as stored in audit_events.kind.
type Kind string

// Every kind of event the code appends. Each has one details type below
// (Details.Kind returns it); the history filter menu lists Kinds.
const (
	KindRunStarted    Kind = "run.started"
	KindRunStepFailed Kind = "run.step_failed"
	KindRunFailed     Kind = "run.failed"
	KindRunRecovered  Kind = "run.recovered"
	KindRunCancelled  Kind = "run.cancelled"
	// The rollback of a run's effects: started, and how it ended.
	KindRunCompensating       Kind = "run.compensating"
	KindRunCompensated        Kind = "run.compensated"
	KindRunCompensationFailed Kind = "run.compensation_failed"
	// A completed run's output was flagged unusable.
	KindRunFlaggedUnusable Kind = "run.flagged_unusable"
	KindApprovalRequested  Kind = "approval.requested"
	KindApprovalVote       Kind = "approval.vote"
	KindDecisionAuto       Kind = "decision.auto"
	KindDecisionRecorded   Kind = "decision.recorded"
	KindBatchDecided       Kind = "batch.decided"
	KindRequestEscalated   Kind = "request.escalated"
	KindPolicyActivated    Kind = "policy.activated"
	// Decisions promoted to a rule (a new policy version) or to a grant,
	// and a grant ended early.
	KindPolicyPromoted     Kind = "policy.promoted"
	KindPolicyGrantRevoked Kind = "policy.grant_revoked"
	KindUserCreated        Kind = "user.created"
	KindUserDisabled       Kind = "user.disabled"
	KindUserEnabled        Kind = "user.enabled"
	KindUserRoleChanged    Kind = "user.role_changed"
	KindTokenCreated       Kind = "token.created"
	KindTokenRevoked       Kind = "token.revoked"
	KindAuthLogin          Kind = "auth.login"
	KindAuthLoginFailed    Kind = "auth.login_failed"
	KindAuthLoginThrottle  Kind = "auth.login_throttled"
	KindAuthLogout         Kind = "auth.logout"
	KindWebhookCreated     Kind = "webhook.created"
	KindWebhookDeleted     Kind = "webhook.deleted"
)

// Kinds lists every kind the code appends, sorted: the history filter menu.
// A test holds it against the details types, so that a new kind cannot be
// emitted without appearing here.
var Kinds = func() []Kind {
	k := []Kind{KindRunStarted, KindRunStepFailed, KindRunFailed, KindRunRecovered, KindRunCancelled,
		KindRunSleeping, KindRunEventWaiting, KindRunWoke, KindRunEventReceived,
		KindRunCompensating, KindRunCompensated, KindRunCompensationFailed, KindRunFlaggedUnusable,
		KindApprovalRequested, KindApprovalVote, KindDecisionAuto, KindDecisionRecorded, KindBatchDecided,
		KindRequestEscalated, KindPolicyActivated, KindPolicyPromoted, KindPolicyGrantRevoked,
		KindUserCreated, KindUserDisabled, KindUserEnabled, KindUserRoleChanged, KindTokenCreated, KindTokenRevoked, KindAuthLogin, KindAuthLoginFailed,
		KindAuthLoginThrottle, KindAuthLogout, KindWebhookCreated, KindWebhookDeleted}
	slices.Sort(k)
	return k
}()

// Details is what an event of one kind records. Each kind has its own type,
// shared by the code that appends the event and the code that reads it; the
// JSON field names are part of the exported audit log and of the chain's
// hashes, so they never change.
type Details interface {
	Kind() Kind
}

// Subject is what an event is about: a run, a request, a batch, a user, a
// policy version or a network address.
type Subject struct {
	Type string
	ID   string
}

// RunSubject is a run.
func RunSubject(id string) Subject { return Subject{"run", id} }

// RequestSubject is an approval request.
func RequestSubject(id string) Subject { return Subject{"request", id} }

// BatchSubject is a batch of requests.
func BatchSubject(id string) Subject { return Subject{"batch", id} }

// UserSubject is an account.
func UserSubject(id int64) Subject { return Subject{"user", strconv.FormatInt(id, 10)} }

// PolicySubject is a policy version.
func PolicySubject(version int) Subject { return Subject{"policy", strconv.Itoa(version)} }

// GrantSubject is a time-boxed policy grant.
func GrantSubject(id int64) Subject { return Subject{"grant", strconv.FormatInt(id, 10)} }

// WebhookSubject is a webhook subscription.
func WebhookSubject(id int64) Subject { return Subject{"webhook", strconv.FormatInt(id, 10)} }

// AddressSubject is a client's network address.
func AddressSubject(ip string) Subject { return Subject{"address", ip} }

// Event is one audit event to append.
type Event struct {
	Actor   string
	Subject Subject
	// RunID is the run the event belongs to, if any ("" for none).
	RunID   string
	Details Details
}

// Append records e in the caller's transaction (or on a pool, alone); the
// chainer links it once committed. It returns the event's id.
func Append(ctx context.Context, db store.DBTX, e Event) (int64, error) {
	var runID *string
	if e.RunID != "" {
		runID = &e.RunID
	}
	return store.AuditAppend(ctx, db, e.Actor, string(e.Details.Kind()), e.Subject.Type, e.Subject.ID, runID, e.Details)
}

// RunStarted: a run was started.
type RunStarted struct {
	Workflow    string `json:"workflow"`
	BusinessKey string `json:"business_key"`
	// Version is the workflow version the run is pinned to (migration 21);
	// absent from events recorded before versions existed, which were 1.
	Version int `json:"version,omitempty"`
}

// RunFailed: an attempt of a run failed; Final says whether the run ended
// (run.failed) or River retries it (run.step_failed). A failure of the run's
// own execution names its Attempt; one the sweeper found names its Recovery.
type RunFailed struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	*Attempt
	*Recovery
	Final bool `json:"-"`
}

// Attempt is where a run's execution failed.
type Attempt struct {
	Attempt int    `json:"attempt"`
	Step    string `json:"step"` // the step it had reached
}

// Recovery is why the sweeper ended a run that had lost its worker.
type Recovery struct {
	Cause      string `json:"cause"`
	Recoveries int    `json:"recoveries"`
}

// RunRecovered: the sweeper handed a run that lost its worker to a new job.
type RunRecovered struct {
	Cause      string `json:"cause"`
	Status     string `json:"status"`
	FromSeq    int    `json:"from_seq"`
	Seq        int    `json:"seq"`
	Recoveries int    `json:"recoveries"`
}

// RunCancelled: a run was cancelled.
type RunCancelled struct {
	From string `json:"from"`
}

// RunCompensating: a run that failed, was rejected or was cancelled after
// effects that declare an undo starts undoing them. Cause is failed, rejected
// or cancelled; Undos is how many undos it will run.
type RunCompensating struct {
	Cause string `json:"cause"`
	Undos int    `json:"undos"`
}

// RunCompensated: every undo of a run ran; Undone counts them (the rollbacks).
type RunCompensated struct {
	Cause  string `json:"cause"`
	Undone int    `json:"undone"`
}

// RunCompensationFailed: an undo failed and the rollback stopped there,
// for a human to finish. Undone counts the undos that ran before it.
type RunCompensationFailed struct {
	Cause   string `json:"cause"`
	Step    string `json:"step"`
	Message string `json:"message"`
	Undone  int    `json:"undone"`
}

// RunFlaggedUnusable: a person or an API client said a completed run's
// output could not be used, why (Category) and in their words (Reason).
type RunFlaggedUnusable struct {
	Workflow string                 `json:"workflow"`
	Category vocab.UnusableCategory `json:"category"`
	Reason   string                 `json:"reason"`
}

// Facets are the details fields that the history filters on (verdict,
// workflow, rule, tier: store.AuditFilter reads them as details->>'…'), that
// its summary counts (verdict) and that the CSV export gives columns of.
// Every event about a request or a batch embeds them, so that writers and
// readers share one spelling. Only decisions have a verdict.
type Facets struct {
	Verdict  vocab.Verdict `json:"verdict,omitempty"`
	Workflow string        `json:"workflow"`
	Rule     string        `json:"rule"`
	Tier     vocab.Tier    `json:"tier"`
}

// ApprovalRequested: a run asked a human to decide an action.
type ApprovalRequested struct {
	Facets
	ActionKind        string          `json:"action_kind"`
	Summary           string          `json:"summary"`
	PayloadHash       string          `json:"payload_hash"`
	Shown             json.RawMessage `json:"shown"`
	PolicyVersion     int             `json:"policy_version"`
	Reason            string          `json:"reason"`
	ApprovalsRequired int             `json:"approvals_required"`
	Deadline          *time.Time      `json:"deadline"`
}

// ApprovalVote: one approval of a request that needs several.
type ApprovalVote struct {
	Votes       int    `json:"votes"`
	Required    int    `json:"required"`
	PayloadHash string `json:"payload_hash"`
}

// DecisionAuto: the policy approved an action by itself.
type DecisionAuto struct {
	Facets
	ActionKind    string `json:"action_kind"`
	Summary       string `json:"summary"`
	PayloadHash   string `json:"payload_hash"`
	PolicyVersion int    `json:"policy_version"`
	Reason        string `json:"reason"`
}

// DecisionRecorded: a request was decided (by a person, or by a deadline as
// the policy). The history summary reads Verdict and SecondsToDecision; its
// filters read Verdict, Workflow, Rule and Tier.
type DecisionRecorded struct {
	Facets
	Reason            string  `json:"reason"`
	Comment           string  `json:"comment"`
	PayloadHash       string  `json:"payload_hash"`
	PolicyVersion     int     `json:"policy_version"`
	ActionKind        string  `json:"action_kind"`
	SecondsToDecision float64 `json:"seconds_to_decision"`
	BatchDecisionID   *string `json:"batch_decision_id"`
	// Diff lists the edited fields ([]approval.Change), for an edit.
	Diff any `json:"diff,omitzero"`
	*Edited
	// Approvers are the distinct approvers of a request that needs
	// several (present, maybe empty, exactly then).
	Approvers []string `json:"approvers,omitzero"`
	// Channel is where the decision was made, when not the console or the
	// API: "slack" for a Slack button.
	Channel string `json:"channel,omitempty"`
}

// Edited is, for an edit, the rule and policy version that judged the
// edited action, and the edited action's hash.
type Edited struct {
	EditedRule          string     `json:"edited_rule"`
	EditedTier          vocab.Tier `json:"edited_tier"`
	EditedPolicyVersion int        `json:"edited_policy_version"`
	EditedPayloadHash   string     `json:"edited_payload_hash"`
}

// BatchDecided: a reviewer decided the shown items of a batch at once.
type BatchDecided struct {
	Facets
	BatchDecisionID string `json:"batch_decision_id"`
	Action          string `json:"action"`
	Reason          string `json:"reason"`
	Shown           int    `json:"shown"`
	Approved        int    `json:"approved"`
	Rejected        int    `json:"rejected"`
	LeftOut         int    `json:"left_out"`
	// Refused lists the items refused and why ([]approval.ItemOutcome).
	Refused any `json:"refused"`
}

// RequestEscalated: a request's deadline passed and its rule escalates it.
type RequestEscalated struct {
	Facets
	EscalateTo []vocab.Role `json:"escalate_to"`
	Reason     string       `json:"reason"`
}

// PolicyActivated: a policy version became the active one.
type PolicyActivated struct {
	Version         int    `json:"version"`
	SHA256          string `json:"sha256"`
	PreviousVersion *int   `json:"previous_version,omitempty"`
}

// PolicyPromoted: an admin promoted decisions to a rule. Mode says how: a
// new policy version with the narrower rule before the broad one ("rule"),
// or a time-boxed grant ("grant"). The evidence (decided, approved since) and
// what the simulation of the window found are recorded with it.
type PolicyPromoted struct {
	Mode       string     `json:"mode"`
	Rule       string     `json:"rule"`     // the broad rule narrowed
	NewRule    string     `json:"new_rule"` // the narrower rule's name
	ActionKind string     `json:"action_kind"`
	Tier       vocab.Tier `json:"tier"`
	When       string     `json:"when"`
	Decided    int        `json:"decided"`
	Approved   int        `json:"approved"`
	Since      time.Time  `json:"since"`
	// Matched is how many requests of the window the narrower rule would
	// have decided; LetThrough how many of those humans had not approved
	// as proposed (rejected, edited or sent back).
	Matched    int        `json:"matched"`
	LetThrough int        `json:"let_through"`
	Version    int        `json:"version,omitempty"`  // mode rule: the version activated
	GrantID    int64      `json:"grant_id,omitempty"` // mode grant
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
}

// PolicyGrantRevoked: an admin ended a grant before its expiry.
type PolicyGrantRevoked struct {
	GrantID   int64     `json:"grant_id"`
	Rule      string    `json:"rule"`
	ExpiresAt time.Time `json:"expires_at"`
}

// UserCreated: an account was created.
type UserCreated struct {
	Email string     `json:"email"`
	Role  vocab.Role `json:"role"`
}

// UserAccess: an account was disabled (ending its sessions) or enabled again.
type UserAccess struct {
	Email    string `json:"email"`
	Disabled bool   `json:"-"`
}

// UserRoleChanged: an account's role changed.
type UserRoleChanged struct {
	Email string     `json:"email"`
	From  vocab.Role `json:"from"`
	To    vocab.Role `json:"to"`
}

// TokenCreated: an API token was issued.
type TokenCreated struct {
	Email     string     `json:"email"`
	TokenID   string     `json:"token_id"`
	Name      string     `json:"name"`
	Scopes    []string   `json:"scopes"`
	ExpiresAt *time.Time `json:"expires_at"`
}

// TokenRevoked: an API token was revoked.
type TokenRevoked struct {
	Email   string `json:"email"`
	TokenID string `json:"token_id"`
	Name    string `json:"name"`
}

// WebhookCreated: an admin subscribed a URL to notification events.
type WebhookCreated struct {
	WebhookID int64    `json:"webhook_id"`
	URL       string   `json:"url"`
	Events    []string `json:"events"`
}

// WebhookDeleted: an admin deleted a webhook subscription.
type WebhookDeleted struct {
	WebhookID int64 `json:"webhook_id"`
}

// AuthLogin: a person signed in.
type AuthLogin struct {
	IP string `json:"ip"`
}

// AuthLoginFailed: a sign-in was refused; the actor is the email typed, so
// only admins see it.
type AuthLoginFailed struct {
	IP     string `json:"ip"`
	Reason string `json:"reason"`
	// Summary is set (IP and Reason empty) on the event that stands for the
	// failures of a window past the global cap (account.maxFailedEvents):
	// they were counted, not written one by one. IP and Reason keep no
	// omitempty: a single failure's details are hashed into the chain as
	// they always were, both keys present.
	*FailureSummary
}

// FailureSummary counts the failed sign-ins of a window that were not
// written one by one; Complete says whether Count is the window's total.
type FailureSummary struct {
	Summary     bool      `json:"summary"`
	Written     int       `json:"written"`
	Count       int       `json:"count"`
	Complete    bool      `json:"complete"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
}

// AuthLoginThrottled: an address was refused sign-ins in a window; Complete
// says whether Count is the window's total (appended once it ended).
type AuthLoginThrottled struct {
	IP          string    `json:"ip"`
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
	Count       int       `json:"count"`
	Complete    bool      `json:"complete"`
}

// AuthLogout: a person signed out, ending all their sessions.
type AuthLogout struct {
	IP string `json:"ip"`
}

// Kind implements Details.
func (RunStarted) Kind() Kind { return KindRunStarted }

// Kind implements Details.
func (d RunFailed) Kind() Kind {
	if d.Final {
		return KindRunFailed
	}
	return KindRunStepFailed
}

// Kind implements Details.
func (RunRecovered) Kind() Kind { return KindRunRecovered }

// Kind implements Details.
func (RunCancelled) Kind() Kind { return KindRunCancelled }

// Kind implements Details.
func (RunCompensating) Kind() Kind { return KindRunCompensating }

// Kind implements Details.
func (RunCompensated) Kind() Kind { return KindRunCompensated }

// Kind implements Details.
func (RunCompensationFailed) Kind() Kind { return KindRunCompensationFailed }

// Kind implements Details.
func (RunFlaggedUnusable) Kind() Kind { return KindRunFlaggedUnusable }

// Kind implements Details.
func (ApprovalRequested) Kind() Kind { return KindApprovalRequested }

// Kind implements Details.
func (ApprovalVote) Kind() Kind { return KindApprovalVote }

// Kind implements Details.
func (DecisionAuto) Kind() Kind { return KindDecisionAuto }

// Kind implements Details.
func (DecisionRecorded) Kind() Kind { return KindDecisionRecorded }

// Kind implements Details.
func (BatchDecided) Kind() Kind { return KindBatchDecided }

// Kind implements Details.
func (RequestEscalated) Kind() Kind { return KindRequestEscalated }

// Kind implements Details.
func (PolicyActivated) Kind() Kind { return KindPolicyActivated }

// Kind implements Details.
func (PolicyPromoted) Kind() Kind { return KindPolicyPromoted }

// Kind implements Details.
func (PolicyGrantRevoked) Kind() Kind { return KindPolicyGrantRevoked }

// Kind implements Details.
func (UserCreated) Kind() Kind { return KindUserCreated }

// Kind implements Details.
func (d UserAccess) Kind() Kind {
	if d.Disabled {
		return KindUserDisabled
	}
	return KindUserEnabled
}

// Kind implements Details.
func (UserRoleChanged) Kind() Kind { return KindUserRoleChanged }

// Kind implements Details.
func (TokenCreated) Kind() Kind { return KindTokenCreated }

// Kind implements Details.
func (TokenRevoked) Kind() Kind { return KindTokenRevoked }

// Kind implements Details.
func (WebhookCreated) Kind() Kind { return KindWebhookCreated }

// Kind implements Details.
func (WebhookDeleted) Kind() Kind { return KindWebhookDeleted }

// Kind implements Details.
func (AuthLogin) Kind() Kind { return KindAuthLogin }

// Kind implements Details.
func (AuthLoginFailed) Kind() Kind { return KindAuthLoginFailed }

// Kind implements Details.
func (AuthLoginThrottled) Kind() Kind { return KindAuthLoginThrottle }

// Kind implements Details.
func (AuthLogout) Kind() Kind { return KindAuthLogout }
