package ask

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/callback"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

// Config wires a Service. Pool is required; Engine may be set later with
// SetEngine (the workflow is registered before the engine exists); Notify,
// Callbacks and Receipts may be nil.
type Config struct {
	Pool   *pgxpool.Pool
	Engine *workflow.Engine
	// Notify wakes long polls; without it they poll the database.
	Notify *notify.Listener
	// Callbacks sends callbacks; nil refuses a callback_url.
	Callbacks Callbacks
	// Receipts signs receipts; nil leaves them out.
	Receipts Receipts
	// PublicURL is the console's origin, for review_url; empty gives a path.
	PublicURL string
	// InlineTimeout bounds the inline execution of a new approval (default 10 s).
	InlineTimeout time.Duration
	// MaxWaitsPerCaller bounds the long polls one caller (a token, or a
	// console user) holds open at once (default DefaultMaxWaitsPerCaller);
	// MaxWaits bounds the process's (default DefaultMaxWaits). Over either,
	// Get answers at once with the approval as it stands.
	MaxWaitsPerCaller, MaxWaits int
}

// Default bounds of concurrent long polls.
const (
	DefaultMaxWaitsPerCaller = 10
	DefaultMaxWaits          = 1000
)

// Service files and reads approvals.
type Service struct {
	pool          *pgxpool.Pool
	engine        *workflow.Engine
	notify        *notify.Listener
	callbacks     Callbacks
	receipts      Receipts
	publicURL     string
	inlineTimeout time.Duration
	waits         waitSlots
	inline        sync.WaitGroup // inline executions under way (executeInline)
}

// waitSlots counts the long polls open, per caller and in all.
type waitSlots struct {
	mu             sync.Mutex
	perCaller, max int
	byCaller       map[string]int
	total          int
}

// take reserves a long poll for caller, or reports false when the caller
// or the process holds as many as it may; release gives it back.
func (w *waitSlots) take(caller string) (release func(), ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.total >= w.max || w.byCaller[caller] >= w.perCaller {
		return nil, false
	}
	w.total++
	w.byCaller[caller]++
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.total--
		if w.byCaller[caller]--; w.byCaller[caller] <= 0 {
			delete(w.byCaller, caller)
		}
	}, true
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{pool: cfg.Pool, engine: cfg.Engine, notify: cfg.Notify, callbacks: cfg.Callbacks,
		receipts: cfg.Receipts, publicURL: strings.TrimSuffix(cfg.PublicURL, "/"), inlineTimeout: cfg.InlineTimeout}
	if s.inlineTimeout <= 0 {
		s.inlineTimeout = 10 * time.Second
	}
	s.waits = waitSlots{perCaller: cfg.MaxWaitsPerCaller, max: cfg.MaxWaits, byCaller: map[string]int{}}
	if s.waits.perCaller <= 0 {
		s.waits.perCaller = DefaultMaxWaitsPerCaller
	}
	if s.waits.max <= 0 {
		s.waits.max = DefaultMaxWaits
	}
	return s
}

// SetEngine gives the service its engine, once the engine exists.
func (s *Service) SetEngine(e *workflow.Engine) { s.engine = e }

// SetNotify gives the service the process's listener, once it exists.
func (s *Service) SetNotify(l *notify.Listener) { s.notify = l }

// Caller is who files or reads an approval: a token's user (with the
// token's scopes) or a console user (Scopes nil: the role alone decides).
type Caller struct {
	UserID  int64
	Email   string
	Role    vocab.Role
	TokenID string   // the token's public id (cs_…); empty for a console session
	Scopes  []string // the token's scopes; nil for a console session
}

// key names the caller for the bound on long polls: the token, or the
// console user.
func (c Caller) key() string {
	if c.TokenID != "" {
		return c.TokenID
	}
	return fmt.Sprintf("user-%d", c.UserID)
}

// readsAll reports whether the caller may read approvals filed by anyone.
func (c Caller) readsAll() bool {
	return c.Scopes == nil || slices.Contains(c.Scopes, account.ScopeRequestsRead)
}

// Submission is an approval to file.
type Submission struct {
	IdempotencyKey string
	Action         workflow.Action
	CallbackURL    string
	Context        json.RawMessage
	Revises        string
}

// Submit files an approval and executes it at once, so that an auto-tier
// action comes back approved in the same call. The same caller's same
// idempotency key returns the same approval (created false); with a
// different body it is ErrIdempotencyConflict. Everything is checked, and
// the caller authorized, before anything is written.
func (s *Service) Submit(ctx context.Context, caller Caller, sub Submission) (*Approval, bool, error) {
	in, err := s.check(caller, sub)
	if err != nil {
		return nil, false, err
	}
	if in.Revises != "" {
		prev, err := s.revisable(ctx, caller, in.Revises)
		if err != nil {
			return nil, false, err
		}
		in.Revision = prev.Revision + 1
	}
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, false, fmt.Errorf("encode approval input: %w", err)
	}
	run, created, inline, err := s.engine.StartInline(ctx, workflow.StartParams{Workflow: Workflow,
		BusinessKey: businessKey(caller.UserID, in.IdempotencyKey), Input: raw, StartedBy: caller.Email, Internal: true})
	if err != nil {
		return nil, false, err
	}
	if !created {
		var was Input
		if err := json.Unmarshal(run.Input, &was); err != nil {
			return nil, false, fmt.Errorf("decode approval input: %w", err)
		}
		if was.BodyHash != in.BodyHash {
			return nil, false, fmt.Errorf("%w (approval %s)", ErrIdempotencyConflict, run.ID)
		}
		a, err := s.build(ctx, s.pool, run.ID, true)
		return a, false, err
	}
	if dec, decided := s.executeInline(ctx, run.ID, inline, in.CallbackURL == ""); decided {
		// Decided by the policy: the answer is made of the run as started
		// and the decision the execution just committed, not read back.
		a, err := s.answerDecided(ctx, run, dec)
		return a, true, err
	}
	a, err := s.build(ctx, s.pool, run.ID, true)
	if err == nil && a.RequestID != "" && !a.Decided() {
		// Parked for a human: this process's open inboxes refresh now,
		// not when the database delivers the parking's notification.
		s.notify.Publish(notify.Message{Type: notify.KindRequest, ID: a.RequestID, RunID: a.ID, Tier: a.Tier})
	}
	return a, true, err
}

// executeInline executes a new approval's run in this process, born claimed
// (Engine.StartInline): no trip through the job queue, no worker racing it.
// The execution outlives a client that hangs up: it is short, and finishing
// it spares the sweeper a run to hand on. It returns once the approval has
// its first answer: parked for a human, or decided by the policy. Without a
// callback the run's last commit (its completion) adds nothing to the
// answer, so the caller answers while it is under way; with one, the answer
// lists the callback's delivery, written by the run's last step.
//
// It reports whether it returned early, the approval decided and the run
// still completing, with the decision the execution committed.
func (s *Service) executeInline(ctx context.Context, runID string, inline *workflow.Inline, early bool) (dec workflow.Decision, decided bool) {
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.inlineTimeout)
	answered := make(chan struct{})
	var once sync.Once
	if early {
		// dec is written before the close that the caller's read waits for.
		ictx = context.WithValue(ictx, answeredKey{}, func(d workflow.Decision) { once.Do(func() { dec = d; close(answered) }) })
	}
	done := make(chan struct{})
	s.inline.Add(1)
	go func() {
		defer s.inline.Done()
		defer close(done)
		defer cancel()
		if err := inline.Execute(ictx); err != nil {
			// Left for a retry, as a job's failed attempt would be: the
			// answer is the approval as it stands.
			slog.Info("inline execution failed; the run is retried", "run", runID, "err", err)
		}
	}()
	select {
	case <-answered:
		return dec, true
	case <-done:
		return workflow.Decision{}, false
	}
}

// answeredKey marks an inline execution whose caller answers as soon as
// the approval is decided (executeInline).
type answeredKey struct{}

// Wait waits for the inline executions under way to end: a process that
// stops calls it after its HTTP server has shut down.
func (s *Service) Wait() { s.inline.Wait() }

// check validates a submission and authorizes the caller, writing nothing,
// and returns the run input it becomes.
func (s *Service) check(caller Caller, sub Submission) (*Input, error) {
	if !caller.Role.Valid() || caller.Role == vocab.RoleViewer {
		return nil, fmt.Errorf("%w: viewers cannot file approvals", workflow.ErrForbidden)
	}
	if caller.Scopes != nil && !slices.Contains(caller.Scopes, account.ScopeApprovalsWrite) {
		return nil, fmt.Errorf("%w: the token lacks the %s scope", workflow.ErrForbidden, account.ScopeApprovalsWrite)
	}
	key := sub.IdempotencyKey
	if key == "" || len(key) > MaxKey || !utf8.ValidString(key) || strings.TrimSpace(key) != key {
		return nil, fmt.Errorf("%w: idempotency_key must be 1 to %d bytes without surrounding spaces", ErrBadRequest, MaxKey)
	}
	a := sub.Action
	if strings.TrimSpace(a.Kind) == "" || strings.TrimSpace(a.Summary) == "" {
		return nil, fmt.Errorf("%w: action.kind and action.summary are required", ErrBadRequest)
	}
	switch a.Risk {
	case "", "low", "medium", "high":
	default:
		return nil, fmt.Errorf("%w: action.risk must be low, medium or high", ErrBadRequest)
	}
	if a.Params == nil {
		a.Params = map[string]any{}
	}
	rawAction, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("%w: action: %v", ErrBadRequest, err)
	}
	if limit := s.engine.OutputLimit(Workflow); len(rawAction) > limit {
		return nil, fmt.Errorf("%w: the action is %d bytes of JSON, over the limit of %d", ErrTooLarge, len(rawAction), limit)
	}
	ctxJSON, err := canonicalContext(sub.Context)
	if err != nil {
		return nil, err
	}
	if sub.CallbackURL != "" {
		if s.callbacks == nil {
			return nil, fmt.Errorf("%w: callbacks are not configured", ErrBadRequest)
		}
		if caller.TokenID == "" {
			return nil, fmt.Errorf("%w: a callback needs an API token, whose callback secret signs it", ErrBadRequest)
		}
		if err := s.callbacks.Check(sub.CallbackURL); err != nil {
			return nil, fmt.Errorf("%w: callback_url: %v", ErrBadRequest, err)
		}
	}
	if sub.Revises != "" && !isUUID(sub.Revises) {
		return nil, fmt.Errorf("%w: revises must be an approval id", ErrRevision)
	}
	in := &Input{Action: a, CallbackURL: sub.CallbackURL, Context: ctxJSON, Revises: sub.Revises,
		IdempotencyKey: key, TokenID: caller.TokenID, UserID: caller.UserID}
	in.BodyHash = bodyHash(rawAction, sub.CallbackURL, ctxJSON, sub.Revises)
	return in, nil
}

// canonicalContext checks the agent's context (a JSON object, at most
// MaxContext bytes) and re-encodes it with sorted keys, so that the body
// hash does not depend on the client's key order or spacing.
func canonicalContext(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if len(raw) > MaxContext {
		return nil, fmt.Errorf("%w: context is %d bytes, over the limit of %d", ErrTooLarge, len(raw), MaxContext)
	}
	var obj map[string]any
	if err := decodeNumbers(raw, &obj, false); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: context must be a JSON object", ErrBadRequest)
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("%w: context: %v", ErrBadRequest, err)
	}
	return out, nil
}

// bodyHash identifies what a submission asks, in canonical form (maps
// encode with sorted keys), to tell a retry from a different body.
func bodyHash(action []byte, callbackURL string, ctxJSON []byte, revises string) string {
	h := sha256.New()
	for _, part := range [][]byte{action, []byte(callbackURL), ctxJSON, []byte(revises)} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// businessKey names an approval's run by its filer and key, so that the
// keys of different users never collide; the key is hashed to fit the
// business key's 200 characters whatever its length.
func businessKey(userID int64, key string) string {
	sum := sha256.Sum256([]byte(key))
	return fmt.Sprintf("user-%d/%s", userID, hex.EncodeToString(sum[:]))
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case !strings.ContainsRune("0123456789abcdefABCDEF", r):
			return false
		}
	}
	return true
}

// revisable returns the approval a revision names, when the caller filed it
// and it ended changes_requested.
func (s *Service) revisable(ctx context.Context, caller Caller, id string) (*Approval, error) {
	prev, err := s.Get(ctx, Caller{UserID: caller.UserID, Role: caller.Role, Scopes: []string{}}, id, 0)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: revises names no approval of yours (%s)", ErrRevision, id)
	} else if err != nil {
		return nil, err
	}
	if prev.Status != StatusChangesRequested {
		return nil, fmt.Errorf("%w: approval %s is %s; only an approval that ended changes_requested can be revised", ErrNotRevisable, id, prev.Status)
	}
	return prev, nil
}

// Get returns an approval the caller may read, waiting up to wait (at most
// MaxWait) for it to be decided. It holds no database connection while it
// waits: the process's listener wakes it when the run or its request
// changes. Returns store.ErrNotFound for an unknown id and for one the
// caller may not read.
func (s *Service) Get(ctx context.Context, caller Caller, id string, wait time.Duration) (*Approval, error) {
	if !isUUID(id) {
		return nil, fmt.Errorf("approval %q: %w", id, store.ErrNotFound)
	}
	wait = min(max(wait, 0), MaxWait)
	if wait > 0 {
		// Each open poll holds a subscription and re-reads the approval:
		// over the caller's or the process's share it is answered at once,
		// as it stands (docs/API.md).
		release, ok := s.waits.take(caller.key())
		if ok {
			defer release()
		} else {
			wait = 0
		}
	}
	var msgs <-chan notify.Message
	if wait > 0 && s.notify != nil {
		// Subscribed before the first read, so that a decision committed
		// between the read and the wait still wakes it.
		ch, stop := s.notify.Subscribe(16)
		defer stop()
		msgs = ch
	}
	// Authorized before anything is built: building signs a receipt (and
	// may chain audit events), which a caller who may not read the
	// approval must not cause.
	run, err := s.authorizeRead(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	a, err := s.buildRun(ctx, s.pool, run, true)
	if err != nil {
		return nil, err
	}
	if wait == 0 || a.Decided() {
		return a, nil
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	// The notification of the run or its request (or a reconnect) wakes the
	// poll; this slow tick only bounds what a dropped notification (a full
	// buffer) costs. Without a listener it is all there is, so it is fast.
	// The jitter spreads the re-reads of polls opened together.
	every := func() time.Duration { return 5*time.Second + rand.N(time.Second) }
	if msgs == nil {
		every = func() time.Duration { return time.Second }
	}
	tick := time.NewTimer(every())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return a, nil
		case <-timer.C:
			return a, nil
		case <-tick.C:
			tick.Reset(every())
		case m := <-msgs:
			if m.Type != notify.Connected && m.ID != id && (a.RequestID == "" || m.ID != a.RequestID) {
				continue
			}
		}
		if a, err = s.build(ctx, s.pool, id, true); err != nil {
			return nil, err
		}
		if a.Decided() {
			return a, nil
		}
	}
}

// authorizeRead lets a caller read the approvals they filed, and any with
// requests:read (or a console session), and returns the approval's run.
// An unknown id, a run of another workflow and an approval the caller may
// not read are all store.ErrNotFound.
func (s *Service) authorizeRead(ctx context.Context, caller Caller, id string) (*store.Run, error) {
	run, err := store.RunGet(ctx, s.pool, id)
	if err != nil {
		return nil, err
	}
	if run.Workflow != Workflow {
		return nil, fmt.Errorf("run %s is not an approval: %w", id, store.ErrNotFound)
	}
	if caller.readsAll() {
		return run, nil
	}
	var in Input
	if err := json.Unmarshal(run.Input, &in); err != nil || in.UserID != caller.UserID {
		return nil, fmt.Errorf("approval %s: %w", id, store.ErrNotFound)
	}
	return run, nil
}

// build reads an approval from its run, request and decision. The status
// follows the decision as soon as it commits, before the run has sent its
// callback: an agent waiting for the verdict need not wait for that.
func (s *Service) build(ctx context.Context, db store.DBTX, id string, deliveries bool) (*Approval, error) {
	if _, inTx := db.(pgx.Tx); inTx {
		run, err := store.RunGet(ctx, db, id)
		if err != nil {
			return nil, err
		}
		return s.buildRun(ctx, db, run, deliveries)
	}
	// On the pool the run and its requests are read at once (a woken long
	// poll's answer waits for one round trip, not two).
	var run *store.Run
	var reqs []*store.Request
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		run, err = store.RunGet(gctx, db, id)
		return err
	})
	g.Go(func() (err error) {
		reqs, err = store.RequestListByRun(gctx, db, id)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return s.assemble(ctx, db, run, reqs, deliveries)
}

// buildRun is build over a run already read.
func (s *Service) buildRun(ctx context.Context, db store.DBTX, run *store.Run, deliveries bool) (*Approval, error) {
	if run.Workflow != Workflow {
		return nil, fmt.Errorf("run %s is not an approval: %w", run.ID, store.ErrNotFound)
	}
	reqs, err := store.RequestListByRun(ctx, db, run.ID)
	if err != nil {
		return nil, err
	}
	return s.assemble(ctx, db, run, reqs, deliveries)
}

// assemble makes the approval of a run and its requests, reading the
// decision, the receipt and (with deliveries, on the pool) the callback's
// deliveries.
func (s *Service) assemble(ctx context.Context, db store.DBTX, run *store.Run, reqs []*store.Request, deliveries bool) (*Approval, error) {
	id := run.ID
	if run.Workflow != Workflow {
		return nil, fmt.Errorf("run %s is not an approval: %w", id, store.ErrNotFound)
	}
	var in Input
	if err := json.Unmarshal(run.Input, &in); err != nil {
		return nil, fmt.Errorf("decode approval input: %w", err)
	}
	a := &Approval{ID: run.ID, Status: StatusPending, IdempotencyKey: in.IdempotencyKey, Action: in.Action,
		Context: in.Context, Revises: in.Revises, Revision: in.Revision, CreatedAt: run.CreatedAt}
	// The deliveries (the callback outbox's own reads) go alongside the
	// decision and the receipt.
	var recs []callback.Record
	var listed chan error
	if in.CallbackURL != "" && deliveries && s.callbacks != nil {
		listed = make(chan error, 1)
		go func() {
			var err error
			recs, err = s.callbacks.List(ctx, run.ID)
			listed <- err
		}()
	}
	if len(reqs) > 0 {
		req := reqs[0]
		a.RequestID, a.Tier, a.Rule, a.PolicyVersion, a.Deadline = req.ID, string(req.Tier), req.Rule, req.PolicyVersion, req.Deadline
		a.ReviewURL = s.publicURL + "/requests/" + req.ID
		if req.Status != vocab.RequestPending {
			if err := s.outcome(ctx, db, a, req); err != nil {
				return nil, err
			}
		}
	}
	if a.Outcome == nil {
		switch run.Status {
		case vocab.RunCancelled:
			a.Status = StatusCancelled
		case vocab.RunFailed:
			a.Status = StatusFailed
			if run.ErrorMessage != nil {
				a.Error = *run.ErrorMessage
			}
		}
	}
	if in.CallbackURL != "" {
		a.Callback = &CallbackInfo{URL: in.CallbackURL, Deliveries: []callback.Record{}}
		if listed != nil {
			if err := <-listed; err != nil {
				return nil, fmt.Errorf("list callbacks of %s: %w", run.ID, err)
			}
			if recs != nil {
				a.Callback.Deliveries = recs
			}
		}
	}
	return a, nil
}

// answerDecided is the answer to a Submit whose inline execution came back
// decided (executeInline): built from the run as started and the policy's
// decision as the execution committed it, without reading back the request
// and the decision it has just written (the answer is the same as build
// makes of them: TestSubmitAnswerIsTheApprovalAsRead). Only the receipt
// goes to the database, for the decision's place in the audit chain. A
// decision other than the policy's own approval (none comes back inline
// today) is read back as build reads it.
func (s *Service) answerDecided(ctx context.Context, run *store.Run, dec workflow.Decision) (*Approval, error) {
	if dec.Tier != vocab.TierAuto || dec.Verdict != vocab.VerdictApprove || dec.RequestID == "" {
		return s.buildRun(ctx, s.pool, run, true)
	}
	var in Input
	if err := json.Unmarshal(run.Input, &in); err != nil {
		return nil, fmt.Errorf("decode approval input: %w", err)
	}
	// The action as the approval step proposed it (workflow.RequestApproval:
	// params never null), whose hash the request and its decision carry.
	action := in.Action
	if action.Params == nil {
		action.Params = map[string]any{}
	}
	raw, err := json.Marshal(action)
	if err != nil {
		return nil, fmt.Errorf("encode action: %w", err)
	}
	a := &Approval{ID: run.ID, Status: statusOf(dec.Verdict), IdempotencyKey: in.IdempotencyKey, Action: in.Action,
		Context: in.Context, Revises: in.Revises, Revision: in.Revision, CreatedAt: run.CreatedAt,
		RequestID: dec.RequestID, Tier: string(dec.Tier), Rule: dec.Rule, PolicyVersion: dec.PolicyVersion,
		ReviewURL: s.publicURL + "/requests/" + dec.RequestID}
	// The rows as the execution wrote them (approval.RecordAuto): the
	// request, approved by policy:<rule>, and its decision, both stamped
	// with the transaction's now().
	req := &store.Request{ID: dec.RequestID, RunID: run.ID, Workflow: run.Workflow, Tier: dec.Tier, Status: vocab.RequestApproved,
		ActionKind: action.Kind, Summary: action.Summary, Action: raw, PayloadHash: workflow.PayloadHash(raw),
		PolicyVersion: dec.PolicyVersion, Rule: dec.Rule, Reason: dec.Reason, CreatedAt: dec.DecidedAt, DecidedBy: &dec.Actor}
	d := &store.Decision{RequestID: req.ID, RunID: run.ID, Actor: dec.Actor, Verdict: dec.Verdict, Reason: dec.Reason,
		Comment: dec.Comment, PayloadHash: req.PayloadHash, PolicyVersion: dec.PolicyVersion, Rule: dec.Rule, Tier: dec.Tier,
		CreatedAt: dec.DecidedAt}
	if err := s.decided(ctx, a, req, d, true); err != nil {
		return nil, err
	}
	return a, nil
}

// outcome fills in a decided request's outcome and receipt.
func (s *Service) outcome(ctx context.Context, db store.DBTX, a *Approval, req *store.Request) error {
	d, err := store.DecisionGetByRequest(ctx, db, req.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // cancelled with its run: no decision
	} else if err != nil {
		return err
	}
	return s.decided(ctx, a, req, d, false)
}

// decided fills in the outcome and receipt of a request and its decision;
// fresh says the decision committed a moment ago (its event not chained yet).
func (s *Service) decided(ctx context.Context, a *Approval, req *store.Request, d *store.Decision, fresh bool) error {
	var err error
	// Numbers as written: the params to execute are the params filed.
	var action workflow.Action
	if err := decodeNumbers(req.Action, &action, false); err != nil {
		return fmt.Errorf("decode action of request %s: %w", req.ID, err)
	}
	o := &Outcome{Verdict: string(d.Verdict), Params: action.Params, Reason: d.Reason, Comment: d.Comment,
		DecidedBy: d.Actor, DecidedAt: d.CreatedAt, Rule: d.Rule, PolicyVersion: d.PolicyVersion, PayloadHash: d.PayloadHash}
	if d.Verdict == vocab.VerdictEdit && len(d.EditedParams) > 0 {
		var edited map[string]any
		if err := decodeNumbers(d.EditedParams, &edited, false); err != nil {
			return fmt.Errorf("decode edited params of request %s: %w", req.ID, err)
		}
		o.Params = edited
		if d.EditedPayloadHash != nil {
			o.PayloadHash = *d.EditedPayloadHash
		}
		if d.EditedRule != nil {
			o.Rule = *d.EditedRule
		}
		if d.EditedPolicyVersion != nil {
			o.PolicyVersion = *d.EditedPolicyVersion
		}
	}
	if o.Params == nil {
		o.Params = map[string]any{}
	}
	a.Outcome = o
	a.Status = statusOf(d.Verdict)
	if s.receipts != nil {
		var r *receipt.Receipt
		if dr, ok := s.receipts.(decisionReceipts); ok && fresh {
			r, err = dr.ForNewDecision(ctx, a.ID, req, d)
		} else if ok {
			r, err = dr.ForDecision(ctx, a.ID, req, d) // the rows just read, not read again
		} else {
			r, err = s.receipts.ForRequest(ctx, a.ID, req.ID)
		}
		if err != nil {
			return fmt.Errorf("receipt of request %s: %w", req.ID, err)
		}
		a.Receipt = r
	}
	return nil
}

// decisionReceipts is what internal/receipt's signer also offers: the
// receipt of a request and decision the caller has read.
type decisionReceipts interface {
	ForDecision(ctx context.Context, approvalID string, req *store.Request, dec *store.Decision) (*receipt.Receipt, error)
	ForNewDecision(ctx context.Context, approvalID string, req *store.Request, dec *store.Decision) (*receipt.Receipt, error)
}

// statusOf maps a verdict to the approval's status.
func statusOf(v vocab.Verdict) string {
	switch v {
	case vocab.VerdictApprove, vocab.VerdictEdit:
		return StatusApproved
	case vocab.VerdictRequestChanges:
		return StatusChangesRequested
	default:
		return StatusRejected
	}
}

// MaxRevisions bounds how far back Revisions follows a chain.
const MaxRevisions = 50

// Revision is an earlier approval of a chain of revisions, as the review
// page lists it.
type Revision struct {
	ID        string
	Revision  int
	Summary   string
	Status    string
	Feedback  string // the reviewer's reason (the requested changes)
	DecidedBy string
	CreatedAt time.Time
}

// Revisions lists the approvals that approval id revises, directly or
// through earlier revisions, oldest first (at most MaxRevisions).
func (s *Service) Revisions(ctx context.Context, id string) ([]Revision, error) {
	runs, err := store.RunRevisions(ctx, s.pool, Workflow, id, MaxRevisions)
	if err != nil {
		return nil, err
	}
	out := make([]Revision, 0, len(runs))
	for i := len(runs) - 1; i >= 0; i-- {
		a, err := s.build(ctx, s.pool, runs[i].ID, false)
		if err != nil {
			return nil, err
		}
		r := Revision{ID: a.ID, Revision: a.Revision, Summary: a.Action.Summary, Status: a.Status, CreatedAt: a.CreatedAt}
		if a.Outcome != nil {
			r.Feedback, r.DecidedBy = a.Outcome.Reason, a.Outcome.DecidedBy
		}
		out = append(out, r)
	}
	return out, nil
}
