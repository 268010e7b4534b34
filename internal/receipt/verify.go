package receipt

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Algorithm is the only signature algorithm receipts use.
const Algorithm = "Ed25519"

// ClaimsVersion is the version of the claims this package writes.
const ClaimsVersion = 1

// PublicKey is a published receipt key: what GET /api/v1/receipts/keys lists
// and what Verify checks signatures with.
type PublicKey struct {
	KeyID     string     `json:"key_id"`
	Algorithm string     `json:"algorithm"`
	PublicKey string     `json:"public_key"` // base64url, unpadded, of the 32 bytes
	CreatedAt time.Time  `json:"created_at"`
	RetiredAt *time.Time `json:"retired_at,omitempty"` // signs no more; its receipts still verify
}

// KeySet is the keys document, as the keys endpoints and `countersign receipt
// keys` write it.
type KeySet struct {
	Keys []PublicKey `json:"keys"`
}

// KeyID names a public key: the first 16 hex characters of its sha256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])[:16]
}

// Errors of Verify, each wrapped with what exactly was wrong.
var (
	// ErrMalformed: the receipt is not well formed (bad base64, wrong sizes,
	// claims that are not JSON).
	ErrMalformed = errors.New("malformed receipt")
	// ErrUnknownKey: no key of the set has the receipt's key id.
	ErrUnknownKey = errors.New("unknown receipt key")
	// ErrBadSignature: the signature does not verify over the payload.
	ErrBadSignature = errors.New("receipt signature does not verify")
	// ErrKeyMismatch: the signed claims name another key than the receipt.
	ErrKeyMismatch = errors.New("receipt key id does not match its claims")
)

var b64 = base64.RawURLEncoding

// Verify checks r against keys and returns the claims it signs: the
// signature is checked over the bytes of the decoded payload with the key
// that r.KeyID names, then the claims are read from those bytes (r.Claims,
// the copy for reading, is ignored). Returns an error wrapping ErrMalformed,
// ErrUnknownKey, ErrBadSignature or ErrKeyMismatch.
func Verify(r Receipt, keys []PublicKey) (Claims, error) {
	var key *PublicKey
	for i := range keys {
		if keys[i].KeyID == r.KeyID {
			key = &keys[i]
			break
		}
	}
	if key == nil {
		return Claims{}, fmt.Errorf("key %q is not among the %d keys given: %w", r.KeyID, len(keys), ErrUnknownKey)
	}
	if key.Algorithm != Algorithm {
		return Claims{}, fmt.Errorf("key %s is %q, not %s: %w", key.KeyID, key.Algorithm, Algorithm, ErrUnknownKey)
	}
	pub, err := b64.DecodeString(key.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return Claims{}, fmt.Errorf("key %s: public_key is not 32 bytes of base64url: %w", key.KeyID, ErrMalformed)
	}
	if KeyID(pub) != key.KeyID {
		return Claims{}, fmt.Errorf("key %s: its id is not the hash of its public key: %w", key.KeyID, ErrMalformed)
	}
	payload, err := b64.DecodeString(r.Payload)
	if err != nil || len(payload) == 0 {
		return Claims{}, fmt.Errorf("payload is not base64url: %w", ErrMalformed)
	}
	sig, err := b64.DecodeString(r.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Claims{}, fmt.Errorf("signature is not 64 bytes of base64url: %w", ErrMalformed)
	}
	if !ed25519.Verify(pub, payload, sig) {
		return Claims{}, fmt.Errorf("key %s: %w", key.KeyID, ErrBadSignature)
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return Claims{}, fmt.Errorf("claims: %v: %w", err, ErrMalformed)
	}
	if c.KeyID != r.KeyID {
		return Claims{}, fmt.Errorf("signed by %s, claims name %q: %w", r.KeyID, c.KeyID, ErrKeyMismatch)
	}
	return c, nil
}
