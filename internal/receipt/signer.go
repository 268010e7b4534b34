package receipt

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
)

// ErrNoKey is returned when the process has no key to sign with and may not
// make one: its database role cannot read stored private keys.
var ErrNoKey = errors.New("this database user may not read the stored receipt key: set COUNTERSIGN_RECEIPT_KEY to a key file (openssl genpkey -algorithm ed25519 -out receipt.pem)")

// Signer signs decision receipts with the process's key: the one in
// COUNTERSIGN_RECEIPT_KEY, or else the key generated on first use and kept
// in the database so that every process signs with the same one.
type Signer struct {
	pool *pgxpool.Pool
	// configured is the key from COUNTERSIGN_RECEIPT_KEY, nil without one.
	configured ed25519.PrivateKey
	// loadedAt stands for the configured key's created_at when the database
	// role may not record it.
	loadedAt time.Time

	mu  sync.Mutex
	key ed25519.PrivateKey // the signing key, once known
	id  string

	// chains lets one on-demand chaining run at a time in the process:
	// receipts read right after their decision (long polls, callbacks) would
	// otherwise queue one by one on the chain's advisory lock, each paying a
	// commit, when one pass chains them all.
	chains singleflight.Group
}

// NewSigner returns a signer on pool; configured, when not nil, is the key
// to sign with instead of a stored one.
func NewSigner(pool *pgxpool.Pool, configured ed25519.PrivateKey) *Signer {
	return &Signer{pool: pool, configured: configured, loadedAt: time.Now().UTC().Truncate(time.Second)}
}

// KeyID returns the id of the key that signs, generating and storing a key
// on first use. Returns ErrNoKey when none may be read or made.
func (s *Signer) KeyID(ctx context.Context) (string, error) {
	_, id, err := s.signingKey(ctx)
	return id, err
}

// signingKey returns the key that signs and its id. Concurrent first uses,
// here and in other processes, all end with the one key that was stored
// first.
func (s *Signer) signingKey(ctx context.Context) (ed25519.PrivateKey, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.key != nil {
		return s.key, s.id, nil
	}
	if s.configured != nil {
		pub := s.configured.Public().(ed25519.PublicKey)
		id := KeyID(pub)
		// Recorded so that its receipts stay verifiable after it is replaced;
		// the application role may not add keys, and then lists it from memory.
		if _, err := store.ReceiptKeyInsert(ctx, s.pool, id, pub, nil); err != nil && !errors.Is(err, store.ErrPermission) {
			return nil, "", err
		}
		s.key, s.id = s.configured, id
		return s.key, s.id, nil
	}
	for range 3 {
		stored, err := store.ReceiptKeySigning(ctx, s.pool)
		switch {
		case err == nil:
			if len(stored.PrivateKey) != ed25519.SeedSize {
				return nil, "", fmt.Errorf("stored receipt key %s is not an Ed25519 seed", stored.KeyID)
			}
			s.key, s.id = ed25519.NewKeyFromSeed(stored.PrivateKey), stored.KeyID
			return s.key, s.id, nil
		case errors.Is(err, store.ErrPermission):
			return nil, "", ErrNoKey
		case !errors.Is(err, store.ErrNotFound):
			return nil, "", err
		}
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, "", fmt.Errorf("generate receipt key: %w", err)
		}
		// Losing to another process's insert writes nothing; the next read
		// finds the winner.
		if _, err := store.ReceiptKeyInsert(ctx, s.pool, KeyID(pub), pub, priv.Seed()); err != nil {
			return nil, "", err
		}
	}
	return nil, "", errors.New("no receipt key after three attempts to make one")
}

// Keys returns every published key, retired ones too, oldest first: the
// keys document. It makes the signing key first, so that the list is never
// empty on a server that signs.
func (s *Signer) Keys(ctx context.Context) ([]PublicKey, error) {
	_, id, err := s.signingKey(ctx)
	if err != nil {
		return nil, err
	}
	stored, err := store.ReceiptKeyList(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	out := make([]PublicKey, 0, len(stored)+1)
	listed := false
	for _, k := range stored {
		listed = listed || k.KeyID == id
		out = append(out, PublicKey{KeyID: k.KeyID, Algorithm: k.Algorithm, PublicKey: b64.EncodeToString(k.PublicKey),
			CreatedAt: k.CreatedAt.UTC(), RetiredAt: utc(k.RetiredAt)})
	}
	if !listed && s.configured != nil {
		out = append(out, PublicKey{KeyID: id, Algorithm: Algorithm,
			PublicKey: b64.EncodeToString(s.configured.Public().(ed25519.PublicKey)), CreatedAt: s.loadedAt})
	}
	return out, nil
}

// Sign signs claims with the process's key, setting their version and key
// id. The payload is the claims' JSON as encoding/json writes the struct
// (map keys sorted), so that the same claims always give the same receipt.
func (s *Signer) Sign(ctx context.Context, c Claims) (*Receipt, error) {
	key, id, err := s.signingKey(ctx)
	if err != nil {
		return nil, err
	}
	c.Version, c.KeyID = ClaimsVersion, id
	if c.Params == nil {
		c.Params = map[string]any{}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode claims: %w", err)
	}
	return &Receipt{KeyID: id, Payload: b64.EncodeToString(payload),
		Signature: b64.EncodeToString(ed25519.Sign(key, payload)), Claims: c}, nil
}

// ForRequest returns the receipt of a decided request (filed as approval
// approvalID through the approvals API, or "" for a workflow's request), or
// nil, nil while it is undecided, a multi-approval request still gathering
// approvers included. Returns an error wrapping store.ErrNotFound for an
// unknown request.
func (s *Signer) ForRequest(ctx context.Context, approvalID, requestID string) (*Receipt, error) {
	req, err := store.RequestGet(ctx, s.pool, requestID)
	if err != nil {
		return nil, err
	}
	dec, err := store.DecisionGetByRequest(ctx, s.pool, req.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return s.ForDecision(ctx, approvalID, req, dec)
}

// ForDecision is ForRequest for a caller that has just read the request and
// its decision (the approvals service building an answer): the same
// receipt, without reading them again.
func (s *Signer) ForDecision(ctx context.Context, approvalID string, req *store.Request, dec *store.Decision) (*Receipt, error) {
	return s.forDecision(ctx, approvalID, req, dec, false)
}

// ForNewDecision is ForDecision for a decision committed a moment ago whose
// event no chainer has had time to link (the approvals API's answer to a
// POST the policy approved): it goes straight to the chaining pass instead
// of first reading an event it would find unchained. The receipt is the
// same; only a round trip is saved.
func (s *Signer) ForNewDecision(ctx context.Context, approvalID string, req *store.Request, dec *store.Decision) (*Receipt, error) {
	return s.forDecision(ctx, approvalID, req, dec, true)
}

func (s *Signer) forDecision(ctx context.Context, approvalID string, req *store.Request, dec *store.Decision, fresh bool) (*Receipt, error) {
	var err error
	var action struct {
		Kind   string         `json:"kind"`
		Target string         `json:"target"`
		Params map[string]any `json:"params"`
	}
	if err := decodeNumbers(req.Action, &action); err != nil {
		return nil, fmt.Errorf("request %s: decode action: %w", req.ID, err)
	}
	c := Claims{ApprovalID: approvalID, RequestID: req.ID, Verdict: string(dec.Verdict), ActionKind: action.Kind,
		Target: action.Target, Params: action.Params, PayloadHash: dec.PayloadHash, Rule: dec.Rule,
		PolicyVersion: dec.PolicyVersion, DecidedBy: dec.Actor, DecidedAt: dec.CreatedAt.UTC()}
	// After an edit the action to execute is the edited one: its parameters,
	// its hash, and the rule and policy version that judged it.
	if dec.EditedParams != nil {
		c.Params = nil
		if err := decodeNumbers(dec.EditedParams, &c.Params); err != nil {
			return nil, fmt.Errorf("request %s: decode edited parameters: %w", req.ID, err)
		}
		if dec.EditedPayloadHash != nil {
			c.PayloadHash = *dec.EditedPayloadHash
		}
		if dec.EditedRule != nil {
			c.Rule = *dec.EditedRule
		}
		if dec.EditedPolicyVersion != nil {
			c.PolicyVersion = *dec.EditedPolicyVersion
		}
	}
	if c.AuditSeq, err = s.decisionSeq(ctx, req, fresh); err != nil {
		return nil, err
	}
	return s.Sign(ctx, c)
}

// decisionKinds are the events that record a request's decision: a
// person's or a deadline's, or the policy's own approval.
var decisionKinds = []string{string(audit.KindDecisionRecorded), string(audit.KindDecisionAuto)}

// decisionSeq returns the audit sequence of the event that recorded req's
// decision. An event is chained within moments of its commit (by every
// worker's chainer); a receipt asked for sooner links it here, so that a
// receipt never goes out without its place in the chain. The pass reports
// the decisions' events it linked, so that a caller whose event it linked
// (the usual case: the approvals API's answer right after the policy
// decided) has its sequence without reading it back. A fresh decision skips
// the first read: the pass links its event, or, if a chainer was quicker,
// the read after the pass finds it.
func (s *Signer) decisionSeq(ctx context.Context, req *store.Request, fresh bool) (int64, error) {
	subject := audit.RequestSubject(req.ID)
	var seq int64
	err := store.ErrNotChained
	if !fresh {
		seq, err = store.AuditEventSeq(ctx, s.pool, req.RunID, subject.Type, subject.ID, decisionKinds...)
		if !errors.Is(err, store.ErrNotChained) {
			return seq, err
		}
	}
	// A pass that was already running when this caller joined may have
	// started before the decision committed; a second pass cannot have.
	for range 2 {
		linked, err, _ := s.chains.Do("chain", func() (any, error) { return s.chainDecisions(ctx) })
		if err != nil {
			return 0, fmt.Errorf("chain the decision's event: %w", err)
		}
		if at, ok := linked.(map[decisionEvent]int64)[decisionEvent{req.RunID, subject.ID}]; ok {
			return at, nil
		}
		// Not linked by that pass: by another chainer, or still to come.
		seq, err = store.AuditEventSeq(ctx, s.pool, req.RunID, subject.Type, subject.ID, decisionKinds...)
		if !errors.Is(err, store.ErrNotChained) {
			return seq, err
		}
	}
	return 0, fmt.Errorf("chain the decision's event: %w", err)
}

// decisionEvent names a decision's event: its run and its request.
type decisionEvent struct{ runID, requestID string }

// chainDecisions links every unchained event and returns the sequences of
// the decisions' events among them. A request has one decision event (the
// policy's, or the one that settled it); were there more, the first
// appended of those the pass linked is the one returned, as AuditEventSeq
// returns the first appended.
func (s *Signer) chainDecisions(ctx context.Context) (map[decisionEvent]int64, error) {
	type event struct{ id, seq int64 }
	first := map[decisionEvent]event{}
	_, err := audit.ChainLinked(ctx, s.pool, func(e *store.AuditEvent) {
		if e.RunID == nil || e.SubjectType != audit.RequestSubject("").Type || !slices.Contains(decisionKinds, e.Kind) {
			return
		}
		k := decisionEvent{*e.RunID, e.SubjectID}
		if f, ok := first[k]; !ok || e.ID < f.id {
			first[k] = event{e.ID, e.Seq}
		}
	})
	seqs := make(map[decisionEvent]int64, len(first))
	for k, e := range first {
		seqs[k] = e.seq
	}
	return seqs, err
}

// decodeNumbers decodes JSON keeping numbers as written (json.Number), so
// that a parameter such as an amount or a large id is signed exactly as it
// was decided, not as a float64 rounds it.
func decodeNumbers(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	return dec.Decode(v)
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
