package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/store/dbsqlc"
)

// ReceiptKey is a receipt signing key's public half, as published.
type ReceiptKey struct {
	KeyID     string
	Algorithm string
	PublicKey []byte
	CreatedAt time.Time
	RetiredAt *time.Time
}

// ReceiptSigningKey is the generated key that signs receipts: PrivateKey is
// its Ed25519 seed.
type ReceiptSigningKey struct {
	KeyID      string
	PublicKey  []byte
	PrivateKey []byte
	CreatedAt  time.Time
}

// ReceiptKeySigning returns the generated key that signs receipts. Returns
// ErrNotFound when none was generated yet, ErrPermission when the role may
// not read private keys (countersign_app).
func ReceiptKeySigning(ctx context.Context, db DBTX) (*ReceiptSigningKey, error) {
	r, err := queries.ReceiptKeySigning(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", interpret(err))
	}
	return &ReceiptSigningKey{KeyID: r.KeyID, PublicKey: r.PublicKey, PrivateKey: r.PrivateKey, CreatedAt: r.CreatedAt}, nil
}

// ReceiptKeyInsert records a key; privateKey is nil for a key held outside
// the database. It reports false when nothing was written: the key is
// already there, or (for a generated key) another process's key won.
// Returns ErrPermission for a role that may not add keys.
func ReceiptKeyInsert(ctx context.Context, db DBTX, keyID string, publicKey, privateKey []byte) (bool, error) {
	ids, err := queries.ReceiptKeyInsert(ctx, db, dbsqlc.ReceiptKeyInsertParams{KeyID: keyID, PublicKey: publicKey, PrivateKey: privateKey})
	if err != nil {
		return false, fmt.Errorf("insert receipt key: %w", interpret(err))
	}
	return len(ids) == 1, nil
}

// ReceiptKeyList returns every key's public half, retired ones too, oldest
// first.
func ReceiptKeyList(ctx context.Context, db DBTX) ([]ReceiptKey, error) {
	rows, err := queries.ReceiptKeyList(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("list receipt keys: %w", interpret(err))
	}
	out := make([]ReceiptKey, 0, len(rows))
	for _, r := range rows {
		out = append(out, ReceiptKey{KeyID: r.KeyID, Algorithm: r.Algorithm, PublicKey: r.PublicKey, CreatedAt: r.CreatedAt, RetiredAt: r.RetiredAt})
	}
	return out, nil
}

// ReceiptKeyRetire stops a key from signing; it stays published. Returns
// ErrNotFound for an unknown or already retired key.
func ReceiptKeyRetire(ctx context.Context, db DBTX, keyID string) error {
	if err := oneRow(queries.ReceiptKeyRetire(ctx, db, keyID)); err != nil {
		return fmt.Errorf("retire receipt key %s: %w", keyID, err)
	}
	return nil
}

// ErrNotChained is returned for an audit event the chainer has not linked
// yet: it has no sequence number so far.
var ErrNotChained = errors.New("audit event not chained yet")

// AuditEventSeq returns the chain sequence of the first event of one of kinds
// about a subject of run runID. Returns ErrNotFound when there is no such
// event, ErrNotChained when it is not linked yet.
func AuditEventSeq(ctx context.Context, db DBTX, runID, subjectType, subjectID string, kinds ...string) (int64, error) {
	rows, err := queries.AuditEventSeq(ctx, db, dbsqlc.AuditEventSeqParams{RunID: &runID, SubjectType: subjectType, SubjectID: subjectID, Kinds: kinds})
	if err != nil {
		return 0, fmt.Errorf("audit event of %s %s: %w", subjectType, subjectID, interpret(err))
	}
	if len(rows) == 0 {
		return 0, fmt.Errorf("audit event of %s %s: %w", subjectType, subjectID, ErrNotFound)
	}
	if rows[0].Seq == nil {
		return 0, fmt.Errorf("audit event %d: %w", rows[0].ID, ErrNotChained)
	}
	return *rows[0].Seq, nil
}
