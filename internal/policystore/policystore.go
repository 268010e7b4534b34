// Package policystore keeps policy versions in the database: activating one is
// an audited act, and every process picks up a new active version without a
// restart, through LISTEN/NOTIFY with a short poll as a backstop.
package policystore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/countersign/countersign/internal/audit"
	"github.com/countersign/countersign/internal/notify"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
)

// Apply validates src and activates it as a new version, recording the act in
// the audit log in the same transaction. A document that does not load is
// refused with its *policy.LoadError and the active policy stays.
func Apply(ctx context.Context, pool *pgxpool.Pool, src []byte, actor string) (*store.PolicyVersion, error) {
	if _, err := policy.Load(src); err != nil {
		return nil, err
	}
	return store.WithTxV(ctx, pool, func(ctx context.Context, tx pgx.Tx) (*store.PolicyVersion, error) {
		return activate(ctx, tx, src, actor, anyVersion)
	})
}

// anyVersion lets activate replace whichever version is active.
const anyVersion = -1

// activate stores src as the active version in tx, with its audit event and
// the notification. When expect is not anyVersion, it returns
// ErrPolicyChanged unless version expect (0: none) is the one it replaces.
func activate(ctx context.Context, tx pgx.Tx, src []byte, actor string, expect int) (*store.PolicyVersion, error) {
	if _, err := policy.Load(src); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(src)
	sha := hex.EncodeToString(sum[:])
	if err := store.PolicyLock(ctx, tx); err != nil {
		return nil, err
	}
	prev, err := store.PolicyGetActive(ctx, tx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if expect != anyVersion && (prev == nil && expect != 0 || prev != nil && prev.Version != expect) {
		return nil, ErrPolicyChanged
	}
	v, err := store.PolicyActivate(ctx, tx, string(src), sha, actor)
	if err != nil {
		return nil, err
	}
	details := audit.PolicyActivated{Version: v.Version, SHA256: sha}
	if prev != nil {
		details.PreviousVersion = &prev.Version
	}
	if _, err := audit.Append(ctx, tx, audit.Event{Actor: actor, Subject: audit.PolicySubject(v.Version), Details: details}); err != nil {
		return nil, err
	}
	return v, notify.Send(ctx, tx, notify.Message{Type: notify.KindPolicy, ID: fmt.Sprint(v.Version)})
}

// Compile loads a stored version into an evaluable policy.
func Compile(v *store.PolicyVersion) (*policy.Policy, error) {
	p, err := policy.Load([]byte(v.Source))
	if err != nil {
		return nil, fmt.Errorf("stored policy version %d does not load: %w", v.Version, err)
	}
	p.Version = v.Version
	return p, nil
}

// Cache serves the active policy from memory and refreshes it when a policy
// notification arrives or the poll interval passes. The policy it serves is
// the active version with the live grants spliced in (WithGrants); a grant's
// expiry is part of its rule's condition, so it stops applying on time even
// between two refreshes.
type Cache struct {
	pool *pgxpool.Pool
	poll time.Duration

	mu        sync.Mutex
	base      *policy.Policy         // the active version, compiled
	grantsKey string                 // the ids and expiries of the grants spliced into current
	versions  map[int]*policy.Policy // the versions grants were made under, compiled
	current   *policy.Policy
	loaded    time.Time
}

// NewCache returns a cache that re-reads the active version at least every poll.
func NewCache(pool *pgxpool.Pool, poll time.Duration) *Cache {
	return &Cache{pool: pool, poll: poll}
}

// Active implements workflow.PolicySource. Before any version is activated it
// returns policy.Default(): everything explicit.
func (c *Cache) Active(ctx context.Context) (*policy.Policy, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.current != nil && time.Since(c.loaded) < c.poll {
		return c.current, nil
	}
	v, err := store.PolicyGetActive(ctx, c.pool)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.base, c.current = policy.Default(), nil
	case err != nil:
		if c.current != nil {
			return c.current, nil // keep deciding with what we have
		}
		return nil, err
	case c.base == nil || c.base.Version != v.Version:
		p, err := Compile(v)
		if err != nil {
			// A version activated under older, looser checks (a fraction in
			// approvals, a costlier condition) no longer loads after an
			// upgrade. Failing every proposal would strand the runs; letting
			// any through would be worse: every action goes to a human.
			slog.Default().Error("the active policy no longer loads; every action is reviewed explicitly until a valid policy is activated",
				"version", v.Version, "err", err)
			p = policy.Default()
			p.Version = v.Version
		}
		c.base, c.current = p, nil
	}
	if c.versions == nil {
		c.versions = map[int]*policy.Policy{}
	}
	grants, err := LiveGrants(ctx, c.pool, c.versions)
	if err != nil {
		// Without the grants the policy is stricter, never looser.
		slog.Default().Error("the policy grants could not be read; deciding without them", "err", err)
		grants = nil
	}
	// Keep only the versions live grants were made under.
	maps.DeleteFunc(c.versions, func(v int, _ *policy.Policy) bool {
		return !slices.ContainsFunc(grants, func(g *Grant) bool { return g.PolicyVersion == v })
	})
	if key := grantsKey(grants); c.current == nil || key != c.grantsKey {
		c.current, c.grantsKey = WithGrants(c.base, grants), key
	}
	c.loaded = time.Now()
	return c.current, nil
}

// grantsKey identifies a set of grants: a grant's rule depends only on its
// row, which never changes but for its revocation (which removes it).
func grantsKey(grants []*Grant) string {
	var b strings.Builder
	for _, g := range grants {
		fmt.Fprintf(&b, "%d,", g.ID)
	}
	return b.String()
}

// Invalidate makes the next Active read the database.
func (c *Cache) Invalidate() {
	c.mu.Lock()
	c.current, c.base = nil, nil
	c.mu.Unlock()
}

// Follow invalidates the cache on every policy notification, and whenever
// the listener (re)connects, until ctx ends. Subscribe before the listener
// starts, so that nothing is missed.
func (c *Cache) Follow(ctx context.Context, msgs <-chan notify.Message) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-msgs:
			if m.Type == notify.KindPolicy || m.Type == notify.Connected {
				c.Invalidate()
			}
		}
	}
}
