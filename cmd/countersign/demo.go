package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/countersign/countersign/internal/account"
	"github.com/countersign/countersign/internal/app"
	"github.com/countersign/countersign/internal/config"
	"github.com/countersign/countersign/internal/demo"
	"github.com/countersign/countersign/internal/policystore"
	"github.com/countersign/countersign/internal/store"
	"github.com/countersign/countersign/policy"
	"github.com/countersign/countersign/vocab"
)

func cmdDemo(e *env, args []string) error {
	fs, dbURL := e.flags("demo", "demo [--every 10s] [--addr :8080]")
	every := fs.Duration("every", 10*time.Second, "start a demo run this often")
	addr := fs.String("addr", "", "listen address (default $COUNTERSIGN_ADDR or :8080)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *every < 10*time.Millisecond {
		return usagef("--every must be at least 10ms")
	}
	cfg, err := e.serveConfig(*dbURL, *addr, 0)
	if err != nil {
		return err
	}
	if err := migrate(e, cfg); err != nil {
		return err
	}
	if err := seedPolicy(e, cfg); err != nil {
		return err
	}
	if err := seedUsers(e, cfg); err != nil {
		return err
	}
	return serve(e, cfg, app.Options{Web: true, Worker: true, Demo: true}, func(ctx context.Context, a *app.App) {
		demo.Stream(ctx, a.Engine, *every, e.logger())
	})
}

// seedPolicy activates the example policy unless it is already the active one.
func seedPolicy(e *env, cfg config.Config) error {
	pool, err := e.pool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	active, err := store.PolicyGetActive(e.ctx, pool)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if active != nil && active.Source == string(policy.Example) {
		return nil
	}
	v, err := policystore.Apply(e.ctx, pool, policy.Example, "demo")
	if err != nil {
		return fmt.Errorf("apply the example policy: %w", err)
	}
	fmt.Fprintf(e.stdout, "activated the example policy as version %d\n", v.Version)
	return nil
}

// DemoPassword is the demo users' password, printed by `countersign demo` and
// written in the README. Demo accounts only.
const DemoPassword = "countersign-demo"

// demoUsers are created by `countersign demo` when missing.
var demoUsers = []struct {
	email, name string
	role        vocab.Role
}{
	{"admin@example.com", "Ada Admin", vocab.RoleAdmin},
	{"approver@example.com", "Alan Approver", vocab.RoleApprover},
	{"approver2@example.com", "Grace Approver", vocab.RoleApprover},
	{"reviewer@example.com", "Rita Reviewer", vocab.RoleReviewer},
	{"viewer@example.com", "Victor Viewer", vocab.RoleViewer},
}

func seedUsers(e *env, cfg config.Config) error {
	pool, err := e.pool(cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, u := range demoUsers {
		_, err := account.Create(e.ctx, pool, u.email, u.name, string(u.role), DemoPassword, "demo")
		if err != nil && !errors.Is(err, account.ErrExists) {
			return fmt.Errorf("demo user %s: %w", u.email, err)
		}
	}
	fmt.Fprintf(e.stdout, "demo users: admin@, approver@, approver2@, reviewer@, viewer@example.com, password %q\n", DemoPassword)
	return nil
}
