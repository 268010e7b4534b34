package receipt_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/countersign/countersign/internal/ai"
	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/receipt"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/internal/testapp"
	"github.com/countersign/countersign/internal/testdb"
	"github.com/countersign/countersign/internal/workflow"
	"github.com/countersign/countersign/vocab"
)

var b64 = base64.RawURLEncoding

func claims() receipt.Claims {
	return receipt.Claims{RequestID: "0b6f2a52-8f0c-4a59-9d8e-1f6f3c1c2a10", Verdict: "approve", ActionKind: "refund",
		Target: "order 1042", Params: map[string]any{"amount": 842.0}, PayloadHash: strings.Repeat("ab", 32),
		Rule: "refunds", PolicyVersion: 3, AuditSeq: 17, DecidedBy: "bob@example.com",
		DecidedAt: time.Date(2026, 11, 21, 12, 0, 0, 123456000, time.UTC)}
}

// withPayload replaces r's payload with claims c, keeping its signature.
func withPayload(r receipt.Receipt, c receipt.Claims) receipt.Receipt {
	raw, _ := json.Marshal(c)
	r.Payload = b64.EncodeToString(raw)
	return r
}

func TestSignAndVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testdb.Pool(t)
	signer := receipt.NewSigner(pool, nil)
	r, err := signer.Sign(ctx, claims())
	require.NoError(t, err)
	keys, err := signer.Keys(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Equal(t, r.KeyID, keys[0].KeyID)
	require.Equal(t, receipt.Algorithm, keys[0].Algorithm)
	pub, err := b64.DecodeString(keys[0].PublicKey)
	require.NoError(t, err)
	require.Len(t, pub, ed25519.PublicKeySize)
	require.Equal(t, receipt.KeyID(pub), r.KeyID, "the id is the hash of the public key")
	require.Regexp(t, `^[0-9a-f]{16}$`, r.KeyID)

	t.Run("RoundTrip", func(t *testing.T) {
		got, err := receipt.Verify(*r, keys)
		require.NoError(t, err)
		require.Equal(t, 1, got.Version)
		require.Equal(t, r.KeyID, got.KeyID)
		require.Equal(t, "order 1042", got.Target)
		require.Equal(t, json.Number("842"), got.Params["amount"])
		require.Equal(t, int64(17), got.AuditSeq)
		require.True(t, claims().DecidedAt.Equal(got.DecidedAt))
	})

	t.Run("Deterministic", func(t *testing.T) {
		again, err := signer.Sign(ctx, claims())
		require.NoError(t, err)
		require.Equal(t, r, again, "the same claims give the same bytes and signature")
	})

	t.Run("TamperedPayload", func(t *testing.T) {
		c := r.Claims
		c.Params = map[string]any{"amount": 8420.0}
		_, err := receipt.Verify(withPayload(*r, c), keys)
		require.ErrorIs(t, err, receipt.ErrBadSignature)
		// One byte of the payload changed.
		raw, _ := b64.DecodeString(r.Payload)
		raw[len(raw)/2] ^= 1
		bad := *r
		bad.Payload = b64.EncodeToString(raw)
		_, err = receipt.Verify(bad, keys)
		require.ErrorIs(t, err, receipt.ErrBadSignature)
	})

	t.Run("TamperedClaimsCopyIsIgnored", func(t *testing.T) {
		// Claims are a copy for reading: what Verify returns is what was signed.
		bad := *r
		bad.Claims.Params = map[string]any{"amount": 1e9}
		got, err := receipt.Verify(bad, keys)
		require.NoError(t, err)
		require.Equal(t, json.Number("842"), got.Params["amount"])
	})

	t.Run("TamperedSignature", func(t *testing.T) {
		sig, _ := b64.DecodeString(r.Signature)
		sig[0] ^= 1
		bad := *r
		bad.Signature = b64.EncodeToString(sig)
		_, err := receipt.Verify(bad, keys)
		require.ErrorIs(t, err, receipt.ErrBadSignature)
		bad.Signature = r.Signature[:20]
		_, err = receipt.Verify(bad, keys)
		require.ErrorIs(t, err, receipt.ErrMalformed)
	})

	t.Run("UnknownKey", func(t *testing.T) {
		bad := *r
		bad.KeyID = "0123456789abcdef"
		_, err := receipt.Verify(bad, keys)
		require.ErrorIs(t, err, receipt.ErrUnknownKey)
		_, err = receipt.Verify(*r, nil)
		require.ErrorIs(t, err, receipt.ErrUnknownKey)
		require.ErrorContains(t, err, r.KeyID)
	})

	t.Run("AnotherKeysId", func(t *testing.T) {
		// A receipt that names another published key: that key's signature
		// check fails.
		other, _, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		otherKey := receipt.PublicKey{KeyID: receipt.KeyID(other), Algorithm: receipt.Algorithm, PublicKey: b64.EncodeToString(other)}
		bad := *r
		bad.KeyID = otherKey.KeyID
		_, err = receipt.Verify(bad, append(keys, otherKey))
		require.ErrorIs(t, err, receipt.ErrBadSignature)
		// A key whose id is not its hash is refused as such.
		forged := otherKey
		forged.KeyID = r.KeyID
		_, err = receipt.Verify(*r, []receipt.PublicKey{forged})
		require.ErrorIs(t, err, receipt.ErrMalformed)
	})

	t.Run("ClaimsNameAnotherKey", func(t *testing.T) {
		// Signed by the right key, but the claims name another: refused.
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		pub := priv.Public().(ed25519.PublicKey)
		c := claims()
		c.Version, c.KeyID = 1, "ffffffffffffffff"
		raw, _ := json.Marshal(c)
		bad := receipt.Receipt{KeyID: receipt.KeyID(pub), Payload: b64.EncodeToString(raw), Signature: b64.EncodeToString(ed25519.Sign(priv, raw))}
		_, err = receipt.Verify(bad, []receipt.PublicKey{{KeyID: receipt.KeyID(pub), Algorithm: receipt.Algorithm, PublicKey: b64.EncodeToString(pub)}})
		require.ErrorIs(t, err, receipt.ErrKeyMismatch)
	})

	t.Run("Malformed", func(t *testing.T) {
		bad := *r
		bad.Payload = "not base64!"
		_, err := receipt.Verify(bad, keys)
		require.ErrorIs(t, err, receipt.ErrMalformed)
	})
}

func TestSignerKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, url := testdb.Pool(t)

	t.Run("ConcurrentFirstUsesAgree", func(t *testing.T) {
		ids := make([]string, 8)
		var wg sync.WaitGroup
		for i := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A signer each, as processes would have.
				id, err := receipt.NewSigner(pool, nil).KeyID(ctx)
				require.NoError(t, err)
				ids[i] = id
			}()
		}
		wg.Wait()
		for _, id := range ids {
			require.Equal(t, ids[0], id)
		}
		keys, err := store.ReceiptKeyList(ctx, pool)
		require.NoError(t, err)
		require.Len(t, keys, 1)
	})

	t.Run("RetiredKeysStillVerify", func(t *testing.T) {
		old := receipt.NewSigner(pool, nil)
		r, err := old.Sign(ctx, claims())
		require.NoError(t, err)
		require.NoError(t, store.ReceiptKeyRetire(ctx, pool, r.KeyID))
		fresh := receipt.NewSigner(pool, nil)
		r2, err := fresh.Sign(ctx, claims())
		require.NoError(t, err)
		require.NotEqual(t, r.KeyID, r2.KeyID, "a retired key signs no more")
		keys, err := fresh.Keys(ctx)
		require.NoError(t, err)
		require.Len(t, keys, 2)
		require.Equal(t, r.KeyID, keys[0].KeyID)
		require.NotNil(t, keys[0].RetiredAt)
		_, err = receipt.Verify(*r, keys)
		require.NoError(t, err)
		_, err = receipt.Verify(*r2, keys)
		require.NoError(t, err)
	})

	t.Run("TheAppRoleCannotReadPrivateKeys", func(t *testing.T) {
		app := appRolePool(t, url)
		_, err := app.Exec(ctx, `SELECT private_key FROM receipt_keys`)
		require.ErrorContains(t, err, "permission denied")
		_, err = app.Exec(ctx, `INSERT INTO receipt_keys (key_id, public_key) VALUES ('x', decode(repeat('00', 32), 'hex'))`)
		require.ErrorContains(t, err, "permission denied", "nor add a key verifiers would trust")
		_, err = receipt.NewSigner(app, nil).KeyID(ctx)
		require.ErrorIs(t, err, receipt.ErrNoKey)
		require.ErrorContains(t, err, "COUNTERSIGN_RECEIPT_KEY")

		// With a configured key it signs and publishes that key beside the
		// stored ones, which it may read.
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		s := receipt.NewSigner(app, priv)
		r, err := s.Sign(ctx, claims())
		require.NoError(t, err)
		require.Equal(t, receipt.KeyID(priv.Public().(ed25519.PublicKey)), r.KeyID)
		keys, err := s.Keys(ctx)
		require.NoError(t, err)
		require.Equal(t, r.KeyID, keys[len(keys)-1].KeyID)
		_, err = receipt.Verify(*r, keys)
		require.NoError(t, err)
	})

	t.Run("ConfiguredKeyIsRecorded", func(t *testing.T) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		id, err := receipt.NewSigner(pool, priv).KeyID(ctx)
		require.NoError(t, err)
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM receipt_keys WHERE key_id = $1 AND private_key IS NULL`, id).Scan(&n))
		require.Equal(t, 1, n, "its public half only, so that its receipts verify after it is replaced")
	})
}

// appRolePool is a pool whose sessions run as countersign_app, as production should.
func appRolePool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pc, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	pc.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET ROLE countersign_app")
		return err
	}
	p, err := pgxpool.NewWithConfig(context.Background(), pc)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

const refundPolicy = `version: 1
rules:
  - name: small
    when: action.kind == "refund" && double(action.params.amount) < 10.0
    tier: auto
  - name: refunds-large
    when: action.kind == "refund" && double(action.params.amount) > 1000.0
    tier: explicit
  - name: refunds
    when: action.kind == "refund"
    tier: explicit
`

type refundIn struct {
	Amount float64
}

// refunder asks for approval of a refund whose order number is too large
// for a float64, so that the receipt shows whether numbers are signed as
// they were decided.
func refunder(r *workflow.Registry, _ *ai.Offline) {
	workflow.Register(r, "refunder", func(ctx context.Context, in refundIn) (workflow.Decision, error) {
		return workflow.RequestApproval(ctx, workflow.Action{Kind: "refund", Target: "order 1042", Summary: "Refund",
			Params: map[string]any{"amount": in.Amount, "order": int64(12345678901234567)}})
	})
}

func TestForRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := testapp.Start(t, testapp.Options{Register: refunder})
	pv, err := policystore.Apply(ctx, b.Pool, []byte(refundPolicy), "setup")
	require.NoError(t, err)
	b.App.Policies.Invalidate()
	signer := b.App.Receipts
	keys := func() []receipt.PublicKey {
		k, err := signer.Keys(ctx)
		require.NoError(t, err)
		return k
	}
	startRun := func(t *testing.T, key string, amount float64, want vocab.RunStatus) (*store.Run, *store.Request) {
		t.Helper()
		raw, _ := json.Marshal(refundIn{Amount: amount})
		run, _, err := b.Engine.Start(ctx, workflow.StartParams{Workflow: "refunder", BusinessKey: key, Input: raw, StartedBy: "agent@example.com"})
		require.NoError(t, err)
		run = b.WaitRun(t, run.ID, want)
		reqs, err := store.RequestListByRun(ctx, b.Pool, run.ID)
		require.NoError(t, err)
		require.Len(t, reqs, 1)
		return run, reqs[0]
	}
	// seqOf is the chain position of the request's event of kind.
	seqOf := func(t *testing.T, req *store.Request, kind audit.Kind) int64 {
		t.Helper()
		var seq *int64
		require.NoError(t, b.Pool.QueryRow(ctx, `SELECT c.seq FROM audit_events e LEFT JOIN audit_chain c ON c.event_id = e.id
			WHERE e.subject_type = 'request' AND e.subject_id = $1 AND e.kind = $2`,
			req.ID, string(kind)).Scan(&seq))
		require.NotNil(t, seq, "the receipt chained the event")
		return *seq
	}
	reviewer := workflow.Actor{Name: "bob@example.com", Roles: []vocab.Role{vocab.RoleReviewer}}

	t.Run("Undecided", func(t *testing.T) {
		_, req := startRun(t, "pending", 100, vocab.RunWaitingHuman)
		r, err := signer.ForRequest(ctx, "", req.ID)
		require.NoError(t, err)
		require.Nil(t, r)
		_, err = signer.ForRequest(ctx, "", "00000000-0000-0000-0000-000000000000")
		require.ErrorIs(t, err, store.ErrNotFound)
	})

	t.Run("Approved", func(t *testing.T) {
		_, req := startRun(t, "approved", 100, vocab.RunWaitingHuman)
		res, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer, Verdict: vocab.VerdictApprove,
			PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		r, err := signer.ForRequest(ctx, "appr-1", req.ID)
		require.NoError(t, err)
		c, err := receipt.Verify(*r, keys())
		require.NoError(t, err)
		require.Equal(t, "appr-1", c.ApprovalID)
		require.Equal(t, req.ID, c.RequestID)
		require.Equal(t, "approve", c.Verdict)
		require.Equal(t, "refund", c.ActionKind)
		require.Equal(t, "order 1042", c.Target)
		require.Equal(t, req.PayloadHash, c.PayloadHash)
		require.Equal(t, "refunds", c.Rule)
		require.Equal(t, pv.Version, c.PolicyVersion)
		require.Equal(t, "bob@example.com", c.DecidedBy)
		require.True(t, res.Decision.CreatedAt.Equal(c.DecidedAt))
		require.Equal(t, json.Number("12345678901234567"), c.Params["order"], "numbers signed as decided")
		require.Equal(t, seqOf(t, req, audit.KindDecisionRecorded), c.AuditSeq)

		again, err := signer.ForRequest(ctx, "appr-1", req.ID)
		require.NoError(t, err)
		require.Equal(t, r, again, "signing on read gives the same receipt every time")
	})

	t.Run("Edited", func(t *testing.T) {
		_, req := startRun(t, "edited", 100, vocab.RunWaitingHuman)
		edited := map[string]any{"amount": 1500.0, "order": int64(12345678901234567)}
		res, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer, Verdict: vocab.VerdictEdit,
			PayloadHash: req.PayloadHash, EditedParams: edited})
		require.NoError(t, err)
		d := res.Decision
		require.NotNil(t, d.EditedPayloadHash)
		r, err := signer.ForRequest(ctx, "", req.ID)
		require.NoError(t, err)
		c, err := receipt.Verify(*r, keys())
		require.NoError(t, err)
		require.Equal(t, "edit", c.Verdict)
		require.Equal(t, json.Number("1500"), c.Params["amount"], "the edited parameters are the ones to execute")
		require.Equal(t, *d.EditedPayloadHash, c.PayloadHash, "the hash of the edited action")
		require.NotEqual(t, req.PayloadHash, c.PayloadHash)
		require.Equal(t, "refunds-large", c.Rule, "the rule that judged the edited action")
		require.Equal(t, seqOf(t, req, audit.KindDecisionRecorded), c.AuditSeq)
	})

	t.Run("Rejected", func(t *testing.T) {
		_, req := startRun(t, "rejected", 100, vocab.RunWaitingHuman)
		_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer, Verdict: vocab.VerdictReject,
			Reason: "no", PayloadHash: req.PayloadHash})
		require.NoError(t, err)
		r, err := signer.ForRequest(ctx, "", req.ID)
		require.NoError(t, err)
		c, err := receipt.Verify(*r, keys())
		require.NoError(t, err)
		require.Equal(t, "reject", c.Verdict)
	})

	t.Run("ChainedOnDemand", func(t *testing.T) {
		// Decided while another chainer holds the chain, the decisions'
		// events commit unchained; the receipts, asked for at once and
		// together, chain them (one pass, shared) and name their places.
		hold, err := b.Pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = hold.Rollback(ctx) })
		_, err = hold.Exec(ctx, `SELECT pg_advisory_xact_lock(7243100)`)
		require.NoError(t, err)
		var reqs []*store.Request
		for i := range 3 {
			_, req := startRun(t, fmt.Sprintf("on-demand-%d", i), 100, vocab.RunWaitingHuman)
			_, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer, Verdict: vocab.VerdictApprove,
				PayloadHash: req.PayloadHash})
			require.NoError(t, err)
			_, err = store.AuditEventSeq(ctx, b.Pool, req.RunID, "request", req.ID, string(audit.KindDecisionRecorded))
			require.ErrorIs(t, err, store.ErrNotChained, "decided while the chain was held")
			reqs = append(reqs, req)
		}
		got := make([]*receipt.Receipt, len(reqs))
		errs := make([]error, len(reqs))
		var wg sync.WaitGroup
		for i, req := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], errs[i] = signer.ForRequest(ctx, "", req.ID)
			}()
		}
		time.Sleep(50 * time.Millisecond) // the receipts wait for the chain
		require.NoError(t, hold.Rollback(ctx))
		wg.Wait()
		for i, req := range reqs {
			require.NoError(t, errs[i])
			c, err := receipt.Verify(*got[i], keys())
			require.NoError(t, err)
			require.Equal(t, req.ID, c.RequestID)
			require.Equal(t, seqOf(t, req, audit.KindDecisionRecorded), c.AuditSeq)
		}
	})

	t.Run("Auto", func(t *testing.T) {
		_, req := startRun(t, "auto", 5, vocab.RunCompleted)
		r, err := signer.ForRequest(ctx, "", req.ID)
		require.NoError(t, err)
		c, err := receipt.Verify(*r, keys())
		require.NoError(t, err)
		require.Equal(t, "approve", c.Verdict)
		require.Equal(t, "small", c.Rule)
		require.Equal(t, "policy:small", c.DecidedBy)
		require.Equal(t, seqOf(t, req, audit.KindDecisionAuto), c.AuditSeq)
	})

	t.Run("NewDecision", func(t *testing.T) {
		// ForNewDecision skips the read that finds the event unchained. Its
		// receipt is ForDecision's whether the event is still unchained (the
		// pass links it) or a chainer was quicker (the read after the pass).
		decide := func(key string) (*store.Request, *store.Decision) {
			_, req := startRun(t, key, 100, vocab.RunWaitingHuman)
			res, err := b.Engine.Decide(ctx, workflow.DecideParams{RequestID: req.ID, Actor: reviewer, Verdict: vocab.VerdictApprove,
				PayloadHash: req.PayloadHash})
			require.NoError(t, err)
			return req, res.Decision
		}
		hold, err := b.Pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = hold.Rollback(ctx) })
		_, err = hold.Exec(ctx, `SELECT pg_advisory_xact_lock(7243100)`)
		require.NoError(t, err)
		unchained, d := decide("new-unchained")
		_, err = store.AuditEventSeq(ctx, b.Pool, unchained.RunID, "request", unchained.ID, string(audit.KindDecisionRecorded))
		require.ErrorIs(t, err, store.ErrNotChained, "decided while the chain was held")
		require.NoError(t, hold.Rollback(ctx))
		r, err := signer.ForNewDecision(ctx, "appr-new", unchained, d)
		require.NoError(t, err)
		c, err := receipt.Verify(*r, keys())
		require.NoError(t, err)
		require.Equal(t, seqOf(t, unchained, audit.KindDecisionRecorded), c.AuditSeq)
		old, err := signer.ForDecision(ctx, "appr-new", unchained, d)
		require.NoError(t, err)
		require.Equal(t, r, old, "the same receipt as ForDecision's")

		chained, d := decide("new-chained")
		_, err = audit.Chain(ctx, b.Pool)
		require.NoError(t, err)
		seq := seqOf(t, chained, audit.KindDecisionRecorded)
		r, err = signer.ForNewDecision(ctx, "", chained, d)
		require.NoError(t, err)
		c, err = receipt.Verify(*r, keys())
		require.NoError(t, err)
		require.Equal(t, seq, c.AuditSeq, "found by the read after a pass that had nothing to link")
	})
}

func TestLoadKeyFile(t *testing.T) {
	t.Parallel()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	require.NoError(t, err)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}

	for name, path := range map[string]string{
		"PEM":     file("key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))),
		"HexSeed": file("key.hex", hex.EncodeToString(priv.Seed())+"\n"),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := receipt.LoadKeyFile(path)
			require.NoError(t, err)
			require.True(t, priv.Equal(got))
		})
	}

	t.Run("Refused", func(t *testing.T) {
		secret := hex.EncodeToString(priv.Seed())
		for name, path := range map[string]string{
			"ShortSeed": file("short.hex", secret[:40]),
			"OtherPEM":  file("cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))),
			"BadPKCS8":  file("bad.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("nope")}))),
			"Missing":   filepath.Join(dir, "nope"),
		} {
			_, err := receipt.LoadKeyFile(path)
			require.Error(t, err, name)
			require.NotContains(t, err.Error(), secret[:40], "%s: an error never quotes the key", name)
		}
	})
}
