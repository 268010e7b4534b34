package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

// Actor is who decides: a signed-in user, an API token's user, or the policy.
type Actor struct {
	Name  string       // the user's email, or policy:<rule>, or system
	Roles []vocab.Role // the user's roles; ignored for system actors
	// System actors (deadlines, the policy) skip the role and self-approval
	// checks: the policy itself is their authority.
	System bool
}

// DecideParams is one verdict on one request.
type DecideParams struct {
	RequestID    string
	Actor        Actor
	Verdict      vocab.Verdict
	Reason       string // required to reject; the feedback for request_changes
	Comment      string
	PayloadHash  string         // the hash of the action the reviewer saw
	EditedParams map[string]any // the new parameters, for the edit verdict
	// BatchDecisionID links the decision to a batch decision, when it is one.
	BatchDecisionID *string
	// InBatch, when set, refuses a request that is not an item of that batch.
	InBatch string
	// Channel is where the decision was made when not the console or the
	// API ("slack"); the audit event records it.
	Channel string
}

// TxOptions tune DecideTx for a caller that decides many requests at once.
type TxOptions struct {
	// Enqueue inserts the resume job; a batch inserts all of them at once.
	Enqueue bool
	// Notify signals live pages per request; a batch signals once.
	Notify bool
}

// ErrNotInBatch is returned for an item that does not belong to the batch.
var ErrNotInBatch = errors.New("not an item of this batch")

// DecideResult is what a decision did.
type DecideResult struct {
	Request  *store.Request
	Decision *store.Decision // nil while more approvals are needed
	Votes    int             // distinct approvals so far, for multi-approval rules
	Required int
	// Resume is the run's next job, when the verdict resumes the run; it is
	// already enqueued unless DecideTx was told not to.
	Resume *RunRef
}

// Change is one field of an edit: what was proposed and what was approved.
type Change struct {
	Field string `json:"field"`
	From  any    `json:"from"`
	To    any    `json:"to"`
}

// Decide records one verdict and resumes or ends the run, all in one
// transaction: exactly one decision wins however many arrive at once. Returns
// *AlreadyDecidedError (matching ErrAlreadyDecided) to every loser,
// ErrPayloadChanged, ErrForbidden, ErrInvalidInput or ErrNotFound.
func (s *Service) Decide(ctx context.Context, p DecideParams) (*DecideResult, error) {
	return store.WithTxV(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) (*DecideResult, error) {
		res, err := s.DecideTx(ctx, tx, p, TxOptions{Enqueue: true, Notify: true})
		if err != nil || res.Decision == nil {
			return res, err
		}
		// The decision's event commits chained when the chain is free, so
		// that its receipt (a long poll's answer) needs no chaining pass.
		_, err = audit.ChainIfFree(ctx, tx)
		return res, err
	})
}

// DecideTx is Decide inside the caller's transaction. It reads as the
// decision goes: load and check, count a vote, record the decision, move the
// run on, audit, signal.
func (s *Service) DecideTx(ctx context.Context, tx pgx.Tx, p DecideParams, o TxOptions) (*DecideResult, error) {
	b, err := s.loadAndCheck(ctx, tx, p)
	if err != nil {
		return nil, err
	}
	res := &DecideResult{Request: b.req, Required: b.req.ApprovalsRequired}
	if more, err := vote(ctx, tx, b, res, o); more || err != nil {
		return res, err
	}
	if err := recordDecision(ctx, tx, b, res); err != nil {
		return nil, err
	}
	if err := s.advanceRun(ctx, tx, b, res, o); err != nil {
		return nil, err
	}
	if err := auditDecision(ctx, tx, b, res); err != nil {
		return nil, err
	}
	if err := s.noticeDecided(ctx, tx, b, res, o); err != nil {
		return nil, err
	}
	if o.Notify {
		if err := notifyRequest(ctx, tx, res.Request); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// ballot is a verdict that passed its checks, with what it needs from the
// locked request on its way to the record.
type ballot struct {
	p      DecideParams
	req    *store.Request
	params map[string]any // what the run will apply: the proposal's or the edited parameters
	diff   []Change       // for an edit
	judged *editJudgement // for an edit: the rule the edited action falls under
}

// loadAndCheck validates the verdict, locks the request and checks,
// before anything is written, that it is still pending, in the batch being
// decided, unchanged since it was shown, and that the actor may decide it;
// an edit is judged again by the policy (ErrEditNeedsReview).
func (s *Service) loadAndCheck(ctx context.Context, tx pgx.Tx, p DecideParams) (*ballot, error) {
	if err := checkVerdict(&p); err != nil {
		return nil, err
	}
	req, err := store.RequestGetForUpdate(ctx, tx, p.RequestID)
	if errors.Is(err, store.ErrNotFound) && p.InBatch != "" {
		// A batch refuses this item and decides the others; any not-found
		// from further on is a fault that must abort the whole batch.
		return nil, ErrNotInBatch
	} else if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("request %s: %w", p.RequestID, ErrNotFound)
	} else if err != nil {
		return nil, err
	}
	if p.InBatch != "" && (req.BatchID == nil || *req.BatchID != p.InBatch) {
		return nil, ErrNotInBatch
	}
	if req.Status != vocab.RequestPending {
		return nil, alreadyDecided(req)
	}
	if p.PayloadHash != req.PayloadHash {
		return nil, ErrPayloadChanged
	}
	if err := authorize(req, p); err != nil {
		return nil, err
	}
	var action Action
	if err := json.Unmarshal(req.Action, &action); err != nil {
		return nil, fmt.Errorf("decode action: %w", err)
	}
	b := &ballot{p: p, req: req, params: action.Params}
	if p.Verdict == vocab.VerdictEdit {
		return b, s.checkEdit(ctx, tx, b, action)
	}
	return b, nil
}

// checkEdit refuses an edit of a multi-approval request, lists what the edit
// changes and has the policy judge the edited action.
func (s *Service) checkEdit(ctx context.Context, tx pgx.Tx, b *ballot, action Action) error {
	if b.req.ApprovalsRequired > 1 {
		// Each approver approves what they saw: an edit would change it under
		// the others. Sending it back keeps every approval about one payload.
		return fmt.Errorf("%w: this rule needs %d approvers, so the action cannot be edited here; request changes instead",
			ErrInvalidInput, b.req.ApprovalsRequired)
	}
	var err error
	if b.diff, err = EditDiff(action.Params, b.p.EditedParams); err != nil {
		return err
	}
	if b.judged, err = s.judgeEdit(ctx, tx, b.req, action, b.p); err != nil {
		return err
	}
	b.params = b.p.EditedParams
	return nil
}

// vote counts a human approval of a multi-approval request. It reports more
// when the request still needs approvers, having recorded the vote and its
// event. A system actor (a deadline's on_timeout) speaks for the policy as a
// whole: counted as one vote it would leave the request pending forever,
// since no second system vote ever comes.
func vote(ctx context.Context, tx pgx.Tx, b *ballot, res *DecideResult, o TxOptions) (more bool, err error) {
	req, p := b.req, b.p
	if p.Verdict != vocab.VerdictApprove || req.ApprovalsRequired <= 1 || p.Actor.System {
		return false, nil
	}
	// The request's row lock serializes voters, so the count is exact.
	n, err := store.VoteAdd(ctx, tx, req.ID, p.Actor.Name, p.Comment)
	if err != nil {
		return true, err
	}
	res.Votes = n
	if n >= req.ApprovalsRequired {
		return false, nil
	}
	_, err = audit.Append(ctx, tx, audit.Event{Actor: p.Actor.Name, Subject: audit.RequestSubject(req.ID), RunID: req.RunID,
		Details: audit.ApprovalVote{Votes: n, Required: req.ApprovalsRequired, PayloadHash: req.PayloadHash}})
	if err != nil || !o.Notify {
		return true, err
	}
	return true, notifyRequest(ctx, tx, req)
}

// recordDecision decides the request (one winner), inserts the decision,
// settles the request's batch when it was its last pending item, and makes
// the decision the approval step's result.
func recordDecision(ctx context.Context, tx pgx.Tx, b *ballot, res *DecideResult) error {
	req, p := b.req, b.p
	won, err := store.RequestDecide(ctx, tx, req.ID, p.PayloadHash, string(p.Verdict.RequestStatus()), p.Actor.Name)
	if errors.Is(err, store.ErrNotFound) {
		// Not reached while the row lock is held; the conditional update and
		// the decisions' unique key stay as the exactly-once guard should the
		// locking ever change.
		again, gerr := store.RequestGet(ctx, tx, req.ID)
		if gerr != nil {
			return gerr
		}
		return alreadyDecided(again)
	} else if err != nil {
		return err
	}
	res.Request = won
	dec, err := store.DecisionInsert(ctx, tx, b.row())
	if errors.Is(err, store.ErrConflict) {
		return alreadyDecided(won)
	} else if err != nil {
		return err
	}
	res.Decision = dec
	// An item decided on its own (from the inbox, by a deadline) may have
	// been its batch's last; a batch decision settles its batch itself.
	if won.BatchID != nil && p.InBatch == "" {
		if err := store.BatchSetDecided(ctx, tx, *won.BatchID); err != nil {
			return err
		}
	}
	out, _ := json.Marshal(b.result(dec))
	return store.StepResolve(ctx, tx, req.RunID, req.StepSeq, out)
}

// row is the decision as stored.
func (b *ballot) row() *store.Decision {
	req, p := b.req, b.p
	row := &store.Decision{
		RequestID: req.ID, RunID: req.RunID, Actor: p.Actor.Name, Verdict: p.Verdict, Reason: p.Reason,
		Comment: p.Comment, PayloadHash: req.PayloadHash,
		PolicyVersion: req.PolicyVersion, Rule: req.Rule, Tier: req.Tier, BatchDecisionID: p.BatchDecisionID,
	}
	if b.judged != nil {
		row.EditedParams, _ = json.Marshal(p.EditedParams)
		row.Diff, _ = json.Marshal(b.diff)
		row.EditedRule, row.EditedPolicyVersion, row.EditedPayloadHash = &b.judged.Rule, &b.judged.PolicyVersion, &b.judged.PayloadHash
	}
	return row
}

// result is the decision as RequestApproval returns it to the resumed run.
func (b *ballot) result(dec *store.Decision) Decision {
	req, p := b.req, b.p
	d := Decision{RequestID: req.ID, Verdict: p.Verdict, Actor: p.Actor.Name, Reason: p.Reason,
		Comment: p.Comment, Params: b.params, Tier: req.Tier, Rule: req.Rule, PolicyVersion: req.PolicyVersion,
		DecidedAt: dec.CreatedAt}
	if b.judged != nil {
		d.EditedRule, d.EditedPayloadHash = b.judged.Rule, b.judged.PayloadHash
	}
	return d
}

// advanceRun ends a rejected run (unless its workflow handles rejections) or
// queues the run to resume, with its job
// unless the caller inserts the jobs itself. The engine's Runs make both
// moves as its status rules allow; a run that is not waiting refuses both.
func (s *Service) advanceRun(ctx context.Context, tx pgx.Tx, b *ballot, res *DecideResult, o TxOptions) error {
	runID := b.req.RunID
	var seq int
	if b.p.Verdict == vocab.VerdictReject {
		var resumed bool
		var err error
		if seq, resumed, err = s.runs.Reject(ctx, tx, runID, b.req.Workflow); err != nil {
			return fmt.Errorf("reject run %s: %w", runID, err)
		}
		if !resumed {
			return nil
		}
	} else {
		var err error
		if seq, err = s.runs.Resume(ctx, tx, runID); err != nil {
			return fmt.Errorf("run %s is not waiting for this decision: %w", runID, err)
		}
	}
	res.Resume = &RunRef{ID: runID, Seq: seq}
	if !o.Enqueue {
		return nil
	}
	return s.scheduler.EnqueueRun(ctx, tx, runID, seq)
}

// auditDecision appends the decision.recorded event.
func auditDecision(ctx context.Context, tx pgx.Tx, b *ballot, res *DecideResult) error {
	req, p, dec := b.req, b.p, res.Decision
	d := audit.DecisionRecorded{
		Facets: audit.Facets{Verdict: p.Verdict, Workflow: req.Workflow, Rule: req.Rule, Tier: req.Tier},
		Reason: p.Reason, Comment: p.Comment, PayloadHash: req.PayloadHash, PolicyVersion: req.PolicyVersion,
		ActionKind: req.ActionKind, SecondsToDecision: dec.CreatedAt.Sub(req.CreatedAt).Seconds(),
		BatchDecisionID: p.BatchDecisionID, Channel: p.Channel,
	}
	if b.diff != nil {
		d.Diff = b.diff
	}
	if j := b.judged; j != nil {
		d.Edited = &audit.Edited{EditedRule: j.Rule, EditedTier: j.Tier, EditedPolicyVersion: j.PolicyVersion, EditedPayloadHash: j.PayloadHash}
	}
	if req.ApprovalsRequired > 1 {
		voters, err := store.VoteList(ctx, tx, req.ID)
		if err != nil {
			return err
		}
		d.Approvers = append([]string{}, voters...) // present, even empty, whenever several approvals were needed
	}
	_, err := audit.Append(ctx, tx, audit.Event{Actor: p.Actor.Name, Subject: audit.RequestSubject(req.ID), RunID: req.RunID, Details: d})
	return err
}

func notifyRequest(ctx context.Context, tx pgx.Tx, req *store.Request) error {
	return notify.Send(ctx, tx, notify.Message{Type: notify.KindDecision, ID: req.ID, RunID: req.RunID, Status: string(req.Status)})
}

func alreadyDecided(req *store.Request) error {
	e := &AlreadyDecidedError{Status: req.Status}
	if req.DecidedBy != nil {
		e.By = *req.DecidedBy
	}
	if req.DecidedAt != nil {
		e.At = *req.DecidedAt
	}
	return e
}

func checkVerdict(p *DecideParams) error {
	p.Reason = strings.TrimSpace(p.Reason)
	p.Comment = strings.TrimSpace(p.Comment)
	switch p.Verdict {
	case vocab.VerdictApprove:
	case vocab.VerdictReject:
		if p.Reason == "" {
			return fmt.Errorf("%w: a rejection needs a reason", ErrInvalidInput)
		}
	case vocab.VerdictRequestChanges:
		if p.Reason == "" {
			return fmt.Errorf("%w: requesting changes needs feedback for the run", ErrInvalidInput)
		}
	case vocab.VerdictEdit:
		if p.EditedParams == nil {
			return fmt.Errorf("%w: edit needs the edited parameters", ErrInvalidInput)
		}
	default:
		return fmt.Errorf("%w: unknown verdict %q (want approve, reject, edit or request_changes)", ErrInvalidInput, p.Verdict)
	}
	if p.PayloadHash == "" {
		return fmt.Errorf("%w: payload_hash is required: decide on what you were shown", ErrInvalidInput)
	}
	if p.Actor.Name == "" {
		return fmt.Errorf("%w: no actor", ErrInvalidInput)
	}
	if len(p.Reason) > 4000 || len(p.Comment) > 4000 {
		return fmt.Errorf("%w: reason and comment are limited to 4000 characters", ErrInvalidInput)
	}
	return nil
}

// AllowedRoles lists who may decide a request: the rule's roles (and, once
// escalated, the roles it escalates to), or any reviewer when the rule names
// none. Admins may always decide.
func AllowedRoles(req *store.Request) []vocab.Role {
	roles := slices.Clone(req.Roles)
	if len(roles) == 0 {
		roles = []vocab.Role{vocab.RoleReviewer, vocab.RoleApprover}
	}
	if req.EscalatedAt != nil {
		roles = append(roles, req.EscalateTo...)
	}
	return append(roles, vocab.RoleAdmin)
}

// CanDecide reports whether the actor's roles allow deciding req at all.
func CanDecide(req *store.Request, roles []vocab.Role) bool {
	allowed := AllowedRoles(req)
	for _, r := range roles {
		if slices.Contains(allowed, r) {
			return true
		}
	}
	return false
}

func authorize(req *store.Request, p DecideParams) error {
	if p.Actor.System {
		return nil
	}
	if !CanDecide(req, p.Actor.Roles) {
		return fmt.Errorf("%w: this request needs one of the roles %s", ErrForbidden, vocab.Join(AllowedRoles(req), ", "))
	}
	if (p.Verdict == vocab.VerdictApprove || p.Verdict == vocab.VerdictEdit) && req.StartedBy == p.Actor.Name {
		return fmt.Errorf("%w: you started this run, so someone else must approve it", ErrForbidden)
	}
	return nil
}

// editJudgement is the policy's answer on an edited action.
type editJudgement struct {
	Rule          string
	Tier          vocab.Tier
	PolicyVersion int
	PayloadHash   string
}

// judgeEdit evaluates the edited action with the policy in force, through the
// same mapping as the proposal, and refuses it with ErrEditNeedsReview when it
// lands on a rule the editor may not decide alone: otherwise an edit would be
// a way around the rule that the edited action really falls under (a small
// refund edited into a big one). The run's model calls and tokens are those
// recorded when the run stopped to wait.
func (s *Service) judgeEdit(ctx context.Context, tx pgx.Tx, req *store.Request, proposed Action, p DecideParams) (*editJudgement, error) {
	edited := proposed
	edited.Params = p.EditedParams
	// The proposal's checks were computed for its own parameters: they say
	// nothing about the edited ones, which the workflow checks again.
	edited.Checks = nil
	raw, err := json.Marshal(edited)
	if err != nil {
		return nil, fmt.Errorf("encode edited action: %w", err)
	}
	if limit := s.outputLimit(req.Workflow); len(raw) > limit {
		return nil, fmt.Errorf("%w: the edited action is %d bytes of JSON, over the limit of %d bytes", ErrInvalidInput, len(raw), limit)
	}
	run, err := store.RunGet(ctx, tx, req.RunID)
	if err != nil {
		return nil, err
	}
	pol, err := s.policies.Active(ctx)
	if err != nil {
		return nil, fmt.Errorf("load policy: %w", err)
	}
	// The proposal saw the approval step's position as steps_used; the run
	// row's count can trail it (a decision resolves its step without counting
	// it), so the position is taken from the request.
	use := Usage{StepsUsed: req.StepSeq, ModelCalls: run.ModelCalls, TokensUsed: run.TokensUsed}
	pd, err := s.judgeClaims(pol, req, edited, PolicyInput(edited, run, use, s.now()), p.Actor)
	if err != nil {
		return nil, err
	}
	// The model's claims about the action (risk, reversible, cost) described
	// the proposal, not the edit: the edit is judged with them and with the
	// worst claims, and must pass both, so that a rule keyed on a claim ("low
	// risk", "reversible", "cheap") cannot wave an edited action through.
	worst := edited
	worst.Risk, worst.Reversible, worst.EstimatedCost = "high", false, math.Inf(1)
	if _, err := s.judgeClaims(pol, req, worst, PolicyInput(worst, run, use, s.now()), p.Actor); err != nil {
		return nil, fmt.Errorf("%w when its risk, reversibility and cost are not taken on the model's word", err)
	}
	return &editJudgement{Rule: pd.Rule, Tier: pd.Tier, PolicyVersion: pol.Version, PayloadHash: PayloadHash(raw)}, nil
}

// judgeClaims evaluates one version of the edited action and refuses it when
// a rule could not be evaluated (the rules after it might be stricter) or it
// lands on a rule the actor may not decide alone.
func (s *Service) judgeClaims(pol *policy.Policy, req *store.Request, a Action, in policy.Input, actor Actor) (policy.Decision, error) {
	d, err := policy.Evaluate(pol, in)
	if err != nil {
		return d, fmt.Errorf("evaluate policy: %w", err)
	}
	if d.Uncertain {
		return d, fmt.Errorf("%w: rule %q (policy version %d) could not be evaluated on the edited action; request changes instead",
			ErrEditNeedsReview, d.Rule, pol.Version)
	}
	if why := stricter(req, d, actor); why != "" {
		return d, fmt.Errorf("%w: the edited action falls under rule %q (policy version %d), which %s; request changes instead",
			ErrEditNeedsReview, d.Rule, pol.Version, why)
	}
	return d, nil
}

// stricter says why the actor may not decide alone an action that the policy
// put under pd, when the proposal was under req's rule; "" when they may.
func stricter(req *store.Request, pd policy.Decision, actor Actor) string {
	needs := pd.RequiredApprovals()
	under := &store.Request{Roles: pd.Roles}
	switch {
	case pd.Tier.StricterThan(req.Tier):
		return fmt.Sprintf("is %s where the proposal was %s", pd.Tier, req.Tier)
	case needs > 1 || needs > req.ApprovalsRequired:
		return fmt.Sprintf("needs %d approvers", needs)
	case !actor.System && !CanDecide(under, actor.Roles):
		return "needs one of the roles " + vocab.Join(AllowedRoles(under), ", ")
	}
	return ""
}

// EditDiff validates edited parameters against the proposed ones and lists
// what changed. An edit may change values but not add fields or change a
// value's JSON type, and must change something.
func EditDiff(proposed, edited map[string]any) ([]Change, error) {
	var changes []Change
	keys := make([]string, 0, len(edited))
	for k := range edited {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		from, ok := proposed[k]
		if !ok {
			return nil, fmt.Errorf("%w: edited field %q was not in the proposal", ErrInvalidInput, k)
		}
		to := edited[k]
		if jsonKind(from) != jsonKind(to) {
			return nil, fmt.Errorf("%w: field %q must stay a %s, got a %s", ErrInvalidInput, k, jsonKind(from), jsonKind(to))
		}
		if !reflect.DeepEqual(from, to) {
			changes = append(changes, Change{Field: k, From: from, To: to})
		}
	}
	for k := range proposed {
		if _, ok := edited[k]; !ok {
			return nil, fmt.Errorf("%w: edited parameters lack field %q", ErrInvalidInput, k)
		}
	}
	if len(changes) == 0 {
		return nil, fmt.Errorf("%w: the edited parameters equal the proposal; approve it instead", ErrInvalidInput)
	}
	return changes, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64, int, int64, json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "list"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
