package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/store"
)

// The scopes an API token may carry. A scope opens a group of API routes; the
// token's user's role still decides what may be done there (a reviewer's
// token with decide cannot decide a rule that needs an approver).
const (
	ScopeRunsRead     = "runs:read"
	ScopeRunsWrite    = "runs:write"
	ScopeRequestsRead = "requests:read"
	ScopeDecide       = "decide"
	ScopeAuditRead    = "audit:read"
	// ScopeRunsFlag flags completed runs unusable; ScopeMetricsRead reads
	// GET /metrics on the main listener.
	ScopeRunsFlag    = "runs:flag"
	ScopeMetricsRead = "metrics:read"
	// ScopeApprovalsWrite is an agent's scope: file approvals and read the
	// ones its user filed, nothing else (it cannot decide or start runs).
	ScopeApprovalsWrite = "approvals:write"
)

// Scope is a scope and what it allows.
type Scope struct {
	Name        string
	Description string
}

// Scopes lists every scope, in the order they are shown and stored.
var Scopes = []Scope{
	{ScopeRunsRead, "read runs and their steps (GET /runs, /runs/{id})"},
	{ScopeRunsWrite, "start runs (POST /runs)"},
	{ScopeRequestsRead, "read approval requests, their receipts, and batches (GET /requests, /batches)"},
	{ScopeDecide, "decide requests and batches, within the user's role (POST …/decision)"},
	{ScopeAuditRead, "read and export the audit log (GET /audit, /audit/export)"},
	{ScopeRunsFlag, "flag a completed run's output unusable, within the user's role (POST /runs/{id}/unusable)"},
	{ScopeMetricsRead, "scrape the Prometheus metrics (GET /metrics)"},
	{ScopeApprovalsWrite, "file approvals and read the ones the token's user filed (POST /approvals, GET /approvals/{id})"},
}

// ScopeNames returns the names of every scope.
func ScopeNames() []string {
	names := make([]string, len(Scopes))
	for i, s := range Scopes {
		names[i] = s.Name
	}
	return names
}

// TokenPrefix starts every API token, so that leaked ones are easy to find.
const TokenPrefix = "cs_"

// Token limits.
const (
	// MaxTokenLife bounds an expiry, so that "never" is asked for explicitly.
	MaxTokenLife = 10 * 365 * 24 * time.Hour
	// MaxTokenName is the longest token name, in characters.
	MaxTokenName = 100
	// touchEvery bounds how often a token's last use is written.
	touchEvery = time.Minute
)

var (
	// ErrTokenRefused is returned for a token that is unknown, revoked,
	// expired, or whose user is disabled; the message says which.
	ErrTokenRefused = errors.New("token refused")
	// ErrAlreadyRevoked is returned when revoking a revoked token.
	ErrAlreadyRevoked = errors.New("the token is already revoked")
)

// publicIDPattern matches the handles of tokens: new ones, and the ones made
// before handles existed.
var publicIDPattern = regexp.MustCompile(`^(cs_[0-9a-f]{8}|legacy-[0-9]{1,18})$`)

// ParseScopes checks scope names, given one per element or comma-separated,
// and returns them without duplicates in the order of Scopes. Returns
// ErrInvalid for an unknown scope or none at all.
func ParseScopes(in []string) ([]string, error) {
	seen := map[string]bool{}
	for _, item := range in {
		for name := range strings.SplitSeq(item, ",") {
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !slices.Contains(ScopeNames(), name) {
				return nil, fmt.Errorf("%w: unknown scope %q (want %s)", ErrInvalid, name, strings.Join(ScopeNames(), ", "))
			}
			seen[name] = true
		}
	}
	var out []string
	for _, s := range ScopeNames() {
		if seen[s] {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: a token needs at least one scope (%s)", ErrInvalid, strings.Join(ScopeNames(), ", "))
	}
	return out, nil
}

// TokenParams describe a new token.
type TokenParams struct {
	Email  string
	Name   string
	Scopes []string
	// ExpiresIn is the token's life from now; zero means it never expires.
	ExpiresIn time.Duration
	By        string // who creates it, for the audit event
	// Now is when the token is made, which its expiry counts from; zero
	// means time.Now (the web side passes its clock).
	Now time.Time
}

// CreateToken makes an API token for a user and returns it with the secret,
// which is stored only as a hash and cannot be shown again, and with its
// callback secret in the token's CallbackSecret. Returns ErrInvalid
// for bad parameters or a disabled user, store.ErrNotFound for no such user.
func CreateToken(ctx context.Context, pool *pgxpool.Pool, p TokenParams) (*store.Token, string, error) {
	name := strings.TrimSpace(p.Name)
	if name == "" || utf8.RuneCountInString(name) > MaxTokenName {
		return nil, "", fmt.Errorf("%w: a token needs a name of 1 to %d characters", ErrInvalid, MaxTokenName)
	}
	scopes, err := ParseScopes(p.Scopes)
	if err != nil {
		return nil, "", err
	}
	if p.ExpiresIn < 0 || p.ExpiresIn > MaxTokenLife {
		return nil, "", fmt.Errorf("%w: the expiry must be between 0 (never) and %s", ErrInvalid, MaxTokenLife)
	}
	var expires *time.Time
	if p.ExpiresIn > 0 {
		now := p.Now
		if now.IsZero() {
			now = time.Now()
		}
		at := now.Add(p.ExpiresIn).UTC().Truncate(time.Second)
		expires = &at
	}
	// The handle is a random prefix; a clash with an existing one is retried
	// with fresh randomness rather than reported.
	for range 3 {
		publicID, secret, err := newSecret()
		if err != nil {
			return nil, "", err
		}
		// The callback secret is the token's second secret: it signs the
		// callbacks of the token's approvals, and is shown with the token once.
		callbackSecret := make([]byte, 32)
		if _, err := rand.Read(callbackSecret); err != nil {
			return nil, "", fmt.Errorf("callback secret randomness: %w", err)
		}
		tok, err := store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.Token, error) {
			u, err := store.UserGetByEmail(ctx, tx, strings.TrimSpace(p.Email))
			if err != nil {
				return nil, err
			}
			if u.Disabled {
				return nil, fmt.Errorf("%w: %s is disabled", ErrInvalid, u.Email)
			}
			tok, err := store.TokenInsert(ctx, tx, store.TokenInsertParams{UserID: u.ID, PublicID: publicID, Name: name,
				Hash: HashToken(secret), Scopes: scopes, ExpiresAt: expires, CallbackSecret: callbackSecret})
			if err != nil {
				return nil, err
			}
			_, err = audit.Append(ctx, tx, audit.Event{Actor: p.By, Subject: audit.UserSubject(u.ID),
				Details: audit.TokenCreated{Email: u.Email, TokenID: tok.PublicID, Name: name, Scopes: scopes, ExpiresAt: expires}})
			return tok, err
		})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		return tok, secret, nil
	}
	return nil, "", errors.New("create token: no free handle after 3 tries")
}

// newSecret returns a token's public handle and the whole secret, which
// starts with the handle: cs_1a2b3c4d_<64 hex digits>.
func newSecret() (publicID, secret string, err error) {
	raw := make([]byte, 36)
	if _, err := rand.Read(raw); err != nil {
		return "", "", fmt.Errorf("token randomness: %w", err)
	}
	publicID = TokenPrefix + hex.EncodeToString(raw[:4])
	return publicID, publicID + "_" + hex.EncodeToString(raw[4:]), nil
}

// HashToken is how a token is stored and looked up.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenUser returns the enabled user a token belongs to and the token, and
// records the use (at most once a minute per token). Returns ErrTokenRefused
// when the token is unknown, revoked, expired at now, or its user is disabled.
func TokenUser(ctx context.Context, pool *pgxpool.Pool, secret string, now time.Time) (*store.User, *store.Token, error) {
	if !strings.HasPrefix(secret, TokenPrefix) {
		return nil, nil, fmt.Errorf("%w: the token is unknown", ErrTokenRefused)
	}
	tok, u, err := store.TokenGetByHash(ctx, pool, HashToken(secret))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil, fmt.Errorf("%w: the token is unknown", ErrTokenRefused)
	case err != nil:
		return nil, nil, err
	case tok.RevokedAt != nil:
		return nil, nil, fmt.Errorf("%w: token %s was revoked", ErrTokenRefused, tok.PublicID)
	case tok.Expired(now):
		return nil, nil, fmt.Errorf("%w: token %s expired at %s", ErrTokenRefused, tok.PublicID, tok.ExpiresAt.UTC().Format(time.RFC3339))
	case u.Disabled:
		return nil, nil, fmt.Errorf("%w: the token's user is disabled", ErrTokenRefused)
	}
	if tok.LastUsedAt == nil || now.Sub(*tok.LastUsedAt) >= touchEvery {
		if err := store.TokenTouch(ctx, pool, tok.ID, now, touchEvery); err != nil {
			return nil, nil, err
		}
	}
	return u, tok, nil
}

// ListTokens returns every token newest first, or the tokens of the user
// with email when it is not empty. Returns store.ErrNotFound for no such user.
func ListTokens(ctx context.Context, pool *pgxpool.Pool, email string) ([]*store.Token, error) {
	email = strings.TrimSpace(email)
	if email != "" {
		if _, err := store.UserGetByEmail(ctx, pool, email); err != nil {
			return nil, err
		}
	}
	return store.TokenList(ctx, pool, email)
}

// RevokeToken revokes the token with the handle publicID; it stops working at
// once. Returns ErrInvalid for a malformed handle, store.ErrNotFound for no
// such token, ErrAlreadyRevoked when it is revoked already.
func RevokeToken(ctx context.Context, pool *pgxpool.Pool, publicID, by string) (*store.Token, error) {
	publicID = strings.TrimSpace(publicID)
	if !publicIDPattern.MatchString(publicID) {
		return nil, fmt.Errorf("%w: %q is not a token id (cs_ and 8 hex digits, as token list shows)", ErrInvalid, publicID)
	}
	return store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.Token, error) {
		tok, err := store.TokenGet(ctx, tx, publicID)
		if err != nil {
			return nil, err
		}
		if tok.RevokedAt != nil {
			return nil, fmt.Errorf("%w (at %s)", ErrAlreadyRevoked, tok.RevokedAt.UTC().Format(time.RFC3339))
		}
		now := time.Now().UTC()
		if err := store.TokenRevoke(ctx, tx, tok.ID, by, now); err != nil {
			return nil, err
		}
		tok.RevokedAt, tok.RevokedBy = &now, &by
		_, err = audit.Append(ctx, tx, audit.Event{Actor: by, Subject: audit.UserSubject(tok.UserID),
			Details: audit.TokenRevoked{Email: tok.UserEmail, TokenID: tok.PublicID, Name: tok.Name}})
		return tok, err
	})
}
